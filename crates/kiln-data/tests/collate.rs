//! Collation: padding sides, loss masks covering exactly the response tokens, pair stacking,
//! truncation, and tensor shapes/values on the Flex backend.
#![cfg(test)]

use burn::backend::Flex;
use burn::tensor::Tensor;
use kiln_data::collate::{
    collate_generation, collate_pairs, collate_sft, pad_left, pad_pairs, pad_right,
};
use kiln_data::examples::{
    encode_generation_prompt, encode_pair, encode_prompt_completion, encode_reward_input,
    encode_sft,
};
use kiln_data::{
    ChatTemplate, Content, Example, IGNORE_INDEX, Message, PairRecord, SftRecord, Tokenizer,
    TruncationConfig,
};
use proptest::prelude::*;

type B = Flex;

fn setup() -> (Tokenizer, ChatTemplate) {
    let tok = Tokenizer::builtin_tiny().unwrap();
    let tpl = ChatTemplate::llama3(&tok).unwrap();
    (tok, tpl)
}

fn ints(t: Tensor<B, 2, burn::tensor::Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().to_vec::<i64>().unwrap()
}

#[test]
fn sft_batch_is_right_padded_with_masked_labels() {
    let (tok, tpl) = setup();
    let pad = tok.pad_id().unwrap();
    let short = SftRecord {
        messages: vec![Message::user("Hi"), Message::assistant("Hello!")],
    };
    let long = SftRecord {
        messages: vec![
            Message::user("What is 2 plus 3?"),
            Message::assistant("2 plus 3 is 5."),
            Message::user("And 4 times 3?"),
            Message::assistant("4 times 3 is 12."),
        ],
    };
    let ex = vec![
        encode_sft(&tok, &tpl, &short, 512).unwrap(),
        encode_sft(&tok, &tpl, &long, 512).unwrap(),
    ];
    let device = Default::default();
    let batch = collate_sft::<B>(&ex, pad, &device).unwrap();
    let t = ex[1].len();
    assert_eq!(batch.input_ids.dims(), [2, t]);
    assert_eq!(batch.loss_mask.dims(), [2, t]);
    let ids = ints(batch.input_ids);
    let att = ints(batch.attention_mask);
    let labels = ints(batch.labels);
    let mask = batch.loss_mask.into_data().to_vec::<f32>().unwrap();
    let n0 = ex[0].len();
    // Row 0: real tokens then padding.
    assert!(ids[n0..t].iter().all(|&x| x == pad as i64));
    assert!(att[..n0].iter().all(|&a| a == 1) && att[n0..t].iter().all(|&a| a == 0));
    // Labels = ids exactly where the mask is 1.
    for k in 0..2 * t {
        if mask[k] == 1.0 {
            assert_eq!(labels[k], ids[k]);
            assert_eq!(att[k], 1);
        } else {
            assert_eq!(mask[k], 0.0);
            assert_eq!(labels[k], IGNORE_INDEX);
        }
    }
    // Masked tokens decode to the assistant answers with their eot.
    let masked: Vec<u32> = (0..t)
        .filter(|&k| mask[t + k] == 1.0)
        .map(|k| ids[t + k] as u32)
        .collect();
    assert_eq!(
        tok.decode(&masked, false).unwrap(),
        "2 plus 3 is 5.<|eot_id|>4 times 3 is 12.<|eot_id|>"
    );
    let last = batch
        .last_index
        .into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .unwrap();
    assert_eq!(last, vec![n0 as i64 - 1, t as i64 - 1]);
}

#[test]
fn generation_batch_is_left_padded() {
    let (tok, tpl) = setup();
    let pad = tok.pad_id().unwrap();
    let a = encode_generation_prompt(&tok, &tpl, &"Hi".into(), 100).unwrap();
    let b = encode_generation_prompt(&tok, &tpl, &"What colour is a banana?".into(), 100).unwrap();
    let batch = collate_generation::<B>(&[a.clone(), b.clone()], pad, &Default::default()).unwrap();
    let t = b.len();
    let ids = ints(batch.input_ids);
    let att = ints(batch.attention_mask);
    let off = t - a.len();
    assert!(ids[..off].iter().all(|&x| x == pad as i64));
    assert_eq!(ids[off..t].iter().map(|&x| x as u32).collect::<Vec<_>>(), a);
    assert_eq!(att[..off], vec![0; off][..]);
    // Both rows end with the generation prompt.
    assert_eq!(ids[t - 1], ids[2 * t - 1]);
    let last = batch
        .last_index
        .into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .unwrap();
    assert_eq!(last, vec![t as i64 - 1; 2]);
    // Keeps the end of a long prompt.
    let c = encode_generation_prompt(&tok, &tpl, &"What colour is a banana?".into(), 5).unwrap();
    assert_eq!(c, b[b.len() - 5..]);
}

#[test]
fn dpo_batch_stacks_chosen_then_rejected() {
    let (tok, tpl) = setup();
    let pad = tok.pad_id().unwrap();
    let pairs = [
        PairRecord {
            prompt: "What colour is the sky?".into(),
            chosen: "Blue.".into(),
            rejected: "The sky is green.".into(),
            margin: Some(1.0),
        },
        PairRecord {
            prompt: "Hi".into(),
            chosen: "Hello! How can I help you today?".into(),
            rejected: "No.".into(),
            margin: None,
        },
    ];
    let cfg = TruncationConfig {
        max_prompt_len: 64,
        max_total_len: 128,
    };
    let ex: Vec<(Example, Example)> = pairs
        .iter()
        .map(|p| encode_pair(&tok, &tpl, p, &cfg).unwrap())
        .collect();
    let batch = collate_pairs::<B>(&ex, pad, &Default::default()).unwrap();
    assert_eq!(batch.num_pairs, 2);
    assert_eq!(
        batch.batch.lengths,
        vec![ex[0].0.len(), ex[1].0.len(), ex[0].1.len(), ex[1].1.len()]
    );
    let host = pad_pairs(&ex, pad).unwrap();
    let t = host.seq_len;
    let row = |r: usize| -> Vec<u32> {
        let n = host.lengths[r];
        host.input_ids[r * t..r * t + n]
            .iter()
            .map(|&x| x as u32)
            .collect()
    };
    assert_eq!(row(0), ex[0].0.ids);
    assert_eq!(row(2), ex[0].1.ids);
    // The response tokens of row 2 decode to the rejected answer.
    let masked: Vec<u32> = (0..t)
        .filter(|&k| host.loss_mask[2 * t + k] == 1.0)
        .map(|k| host.input_ids[2 * t + k] as u32)
        .collect();
    assert_eq!(tok.decode(&masked, true).unwrap(), "The sky is green.");
    // Reward-model input equals the DPO sequence (same template) and ends with eot.
    let rm = encode_reward_input(&tok, &tpl, &pairs[0].prompt, &pairs[0].chosen, 4096).unwrap();
    assert_eq!(rm, ex[0].0.ids);
    assert_eq!(*rm.last().unwrap(), tpl.eot_id());
    assert_eq!(
        encode_reward_input(&tok, &tpl, &pairs[0].prompt, &pairs[0].chosen, 3).unwrap(),
        rm[rm.len() - 3..]
    );
}

#[test]
fn truncation_keeps_prompt_end_and_response_start() {
    let (tok, tpl) = setup();
    let prompt: Content =
        "What colour is the sky? What colour is the grass? What colour is snow?".into();
    let full = encode_prompt_completion(
        &tok,
        &tpl,
        &prompt,
        &"The sky is blue and the grass is green.".into(),
        &TruncationConfig {
            max_prompt_len: 1000,
            max_total_len: 2000,
        },
    )
    .unwrap();
    let cfg = TruncationConfig {
        max_prompt_len: 8,
        max_total_len: 12,
    };
    let ex = encode_prompt_completion(
        &tok,
        &tpl,
        &prompt,
        &"The sky is blue and the grass is green.".into(),
        &cfg,
    )
    .unwrap();
    assert_eq!(ex.len(), 12);
    let n_prompt = full.loss_mask.iter().position(|&m| m).unwrap();
    // The prompt part is the last 8 prompt tokens (ending with the assistant header).
    assert_eq!(ex.ids[..8], full.ids[n_prompt - 8..n_prompt]);
    assert!(ex.loss_mask[..8].iter().all(|&m| !m));
    // The response part is the first 4 response tokens.
    assert_eq!(ex.ids[8..], full.ids[n_prompt..n_prompt + 4]);
    assert!(ex.loss_mask[8..].iter().all(|&m| m));
    assert!(
        encode_prompt_completion(
            &tok,
            &tpl,
            &prompt,
            &"x".into(),
            &TruncationConfig {
                max_prompt_len: 8,
                max_total_len: 8
            }
        )
        .is_err()
    );
}

#[test]
fn bad_batches_are_errors() {
    assert!(pad_right(&[], 0).is_err());
    assert!(
        pad_right(
            &[Example {
                ids: vec![1, 2],
                loss_mask: vec![true]
            }],
            0
        )
        .is_err()
    );
    assert!(pad_left(&[vec![]], 0).is_err());
    let (tok, tpl) = setup();
    let no_assistant = SftRecord {
        messages: vec![Message::user("Hi")],
    };
    assert!(encode_sft(&tok, &tpl, &no_assistant, 100).is_err());
}

fn example_strategy() -> impl Strategy<Value = Example> {
    (1usize..8, 1usize..8).prop_flat_map(|(p, r)| {
        (
            prop::collection::vec(6u32..700, p),
            prop::collection::vec(6u32..700, r),
        )
            .prop_map(|(pi, ri)| {
                let mask = vec![true; ri.len()];
                Example::from_parts(&pi, &ri, &mask)
            })
    })
}

proptest! {
    #[test]
    fn masks_cover_exactly_response_tokens(examples in prop::collection::vec(example_strategy(), 1..6)) {
        let pad = 5u32;
        let b = pad_right(&examples, pad).unwrap();
        let t = b.seq_len;
        prop_assert_eq!(t, examples.iter().map(Example::len).max().unwrap());
        for (r, e) in examples.iter().enumerate() {
            let n_resp = e.num_loss_tokens();
            let row_mask = &b.loss_mask[r * t..(r + 1) * t];
            // Exactly the response tokens, at the end of the real tokens.
            prop_assert_eq!(row_mask.iter().filter(|&&m| m == 1.0).count(), n_resp);
            for (k, &m) in row_mask.iter().enumerate() {
                let in_resp = k >= e.len() - n_resp && k < e.len();
                prop_assert_eq!(m == 1.0, in_resp);
                let lab = b.labels[r * t + k];
                if k >= e.len() {
                    // Padding never leaks into labels, mask or attention.
                    prop_assert_eq!(b.input_ids[r * t + k], pad as i64);
                    prop_assert_eq!(lab, IGNORE_INDEX);
                    prop_assert_eq!(b.attention_mask[r * t + k], 0);
                } else {
                    prop_assert_eq!(b.attention_mask[r * t + k], 1);
                    prop_assert_eq!(lab, if in_resp { e.ids[k] as i64 } else { IGNORE_INDEX });
                }
            }
        }
        // Pair stacking: chosen rows first.
        let pairs: Vec<(Example, Example)> =
            examples.iter().cloned().zip(examples.iter().rev().cloned()).collect();
        let pb = pad_pairs(&pairs, pad).unwrap();
        prop_assert_eq!(pb.batch, 2 * pairs.len());
        for (i, (c, r)) in pairs.iter().enumerate() {
            prop_assert_eq!(pb.lengths[i], c.len());
            prop_assert_eq!(pb.lengths[pairs.len() + i], r.len());
        }
    }

    #[test]
    fn left_padding_keeps_prompts_right_aligned(prompts in prop::collection::vec(prop::collection::vec(6u32..700, 1..10), 1..6)) {
        let b = pad_left(&prompts, 5).unwrap();
        let t = b.seq_len;
        for (r, p) in prompts.iter().enumerate() {
            let row: Vec<u32> = b.input_ids[r * t + t - p.len()..(r + 1) * t].iter().map(|&x| x as u32).collect();
            prop_assert_eq!(&row, p);
            prop_assert_eq!(b.attention_mask[r * t..(r + 1) * t].iter().sum::<i64>(), p.len() as i64);
            prop_assert!(b.loss_mask[r * t..(r + 1) * t].iter().all(|&m| m == 0.0));
        }
    }
}

#[test]
fn ranked_records_encode_best_first() {
    let (tok, tpl) = setup();
    let rec = kiln_data::RankedRecord {
        prompt: "What does a cow eat?".into(),
        responses: vec!["A cow eats grass.".into(), "Grass.".into(), "Meat.".into()],
        rewards: vec![2.0, 1.0, -1.0],
    };
    let rows =
        kiln_data::examples::encode_ranked(&tok, &tpl, &rec, &TruncationConfig::default()).unwrap();
    assert_eq!(rows.len(), 3);
    for (row, resp) in rows.iter().zip(&rec.responses) {
        let masked: Vec<u32> = row
            .ids
            .iter()
            .zip(&row.loss_mask)
            .filter(|(_, m)| **m)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(tok.decode(&masked, true).unwrap(), *resp);
    }
    // Same prompt prefix in every row.
    let n_prompt = rows[0].loss_mask.iter().position(|&m| m).unwrap();
    assert!(
        rows.iter()
            .all(|r| r.ids[..n_prompt] == rows[0].ids[..n_prompt])
    );
}
