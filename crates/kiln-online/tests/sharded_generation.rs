//! Sharded work: the prompts split over 1, 2 or 3 peers give byte-identical
//! `generations.jsonl` records (every prompt samples from its own RNG stream), and annotation
//! over peers gives the same bits as one peer on the committed tiny reward model.
#![cfg(test)]

use burn::backend::{Autodiff, Flex};
use kiln_data::{ChatEncoder, Content, GenerationRecord, TruncationConfig};
use kiln_model::{DecoderConfig, LlamaForCausalLM};
use kiln_online::annotate::annotate_on;
use kiln_online::{OnlineConfig, Silent, generation_records};
use kiln_reward::LlamaRewardModel;
use kiln_train::Placement;

fn peers(n: usize) -> Placement<Autodiff<Flex>> {
    Placement::devices(vec![Default::default(); n])
}

#[test]
fn one_two_and_three_peers_write_the_same_bytes() {
    let enc = ChatEncoder::builtin_tiny(TruncationConfig {
        max_prompt_len: 32,
        max_total_len: 64,
    })
    .unwrap();
    let mut config = DecoderConfig::tiny(enc.tokenizer.vocab_size(), 32);
    config.eos_token_id = enc.stop_ids();
    config.pad_token_id = Some(enc.pad_id);
    let policy = LlamaForCausalLM::<Flex>::init_seeded(&config, 0.3, 5, &Default::default());
    let prompts: Vec<Content> = (0..7)
        .map(|i| Content::Text(format!("Question {i}: what is {} plus {i}?", i * 3)))
        .collect();
    let settings = OnlineConfig::default_generation()
        .with_num_responses(3)
        .with_max_new_tokens(10)
        .with_prompt_batch_size(2);
    let bytes = |n: usize| {
        let records =
            generation_records(&peers(n), &policy, &enc, &prompts, &settings, 11, &Silent).unwrap();
        assert_eq!(records.len(), prompts.len());
        records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect::<String>()
    };
    let one = bytes(1);
    assert!(one.contains("stop_token") || one.contains("length"));
    assert_eq!(bytes(2), one, "2 peers");
    assert_eq!(bytes(3), one, "3 peers");
}

/// The committed tiny HF reward model: 1, 2 and 3 peers give the same bits.
#[test]
fn peers_annotate_a_real_model_like_one_peer() {
    let dir = kiln_test_support::fixture("reward/tiny-rm");
    let rm = LlamaRewardModel::<Flex>::from_pretrained(&dir, &Default::default())
        .unwrap()
        .with_batch_size(3);
    let records: Vec<GenerationRecord> = (0..37)
        .map(|i| {
            let responses = (0..3)
                .map(|k| format!("answer {i} {}", "x ".repeat(k)))
                .collect();
            GenerationRecord::new(Content::from(format!("question {i}?")), responses)
        })
        .collect();
    let one = annotate_on(&peers(1), &rm, &records, &Silent, "annotate").unwrap();
    for n in [2, 3] {
        assert_eq!(
            annotate_on(&peers(n), &rm, &records, &Silent, "annotate").unwrap(),
            one
        );
    }
}
