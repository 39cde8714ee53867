//! The generation engine on a random tiny model: KV cache vs recomputation, batch composition,
//! K responses per prompt, determinism, stop tokens / strings, lengths and log-probs.
#![cfg(test)]

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use kiln_data::Tokenizer;
use kiln_model::prelude::*;
use kiln_model::{DecoderConfig, LlamaForCausalLM};
use kiln_sampling::{FinishReason, GenerationConfig, Generator, SamplerConfig};

fn model(vocab: usize) -> LlamaForCausalLM<Flex> {
    LlamaForCausalLM::init_seeded(
        &DecoderConfig::tiny(vocab, 32),
        0.3,
        10,
        &Default::default(),
    )
}

fn prompts() -> Vec<Vec<u32>> {
    vec![vec![1, 7, 9, 30, 2, 11], vec![4], vec![8, 8, 20]]
}

fn sampling(seed: u64) -> GenerationConfig {
    GenerationConfig::new()
        .with_sampler(SamplerConfig::new().with_seed(seed).with_top_k(Some(20)))
        .with_max_new_tokens(12)
        .with_num_responses(3)
}

fn all_ids(out: &kiln_sampling::GenerationOutput) -> Vec<Vec<u32>> {
    out.responses
        .iter()
        .flatten()
        .map(|g| g.token_ids.clone())
        .collect()
}

#[test]
fn cache_and_recompute_agree_and_seeds_reproduce() {
    let m = model(64);
    let cached = Generator::new(&m, sampling(3)).unwrap();
    let out = cached.generate(&prompts()).unwrap();
    let again = cached.generate(&prompts()).unwrap();
    assert_eq!(out, {
        let mut a = again.clone();
        a.stats = out.stats;
        a
    });
    let slow = Generator::new(&m, sampling(3).with_use_cache(false))
        .unwrap()
        .generate(&prompts())
        .unwrap();
    assert_eq!(all_ids(&out), all_ids(&slow));
    let other = Generator::new(&m, sampling(4))
        .unwrap()
        .generate(&prompts())
        .unwrap();
    assert_ne!(all_ids(&out), all_ids(&other));
    // K responses of a prompt differ (distinct RNG streams).
    let r = &out.responses[0];
    assert!(r[0].token_ids != r[1].token_ids || r[1].token_ids != r[2].token_ids);
    assert_eq!(out.stats.responses, 9);
    assert_eq!(
        out.stats.generated_tokens,
        out.responses
            .iter()
            .flatten()
            .map(|g| g.token_ids.len())
            .sum::<usize>()
    );
}

#[test]
fn results_do_not_depend_on_batch_composition_or_k() {
    let m = model(64);
    let ps = prompts();
    let full = Generator::new(&m, sampling(9))
        .unwrap()
        .generate(&ps)
        .unwrap();
    // Prompt 2 alone with its stream id 2, and with K = 5 instead of 3.
    let alone = Generator::new(&m, sampling(9).with_num_responses(5))
        .unwrap()
        .generate_with_progress(&ps[2..], &[2], |_| {})
        .unwrap();
    for k in 0..3 {
        assert_eq!(
            full.responses[2][k].token_ids,
            alone.responses[0][k].token_ids
        );
    }
    // Chunked processing (one prompt per prefill) gives the same result.
    let chunked = Generator::new(&m, sampling(9).with_prompt_batch_size(1))
        .unwrap()
        .generate(&ps)
        .unwrap();
    assert_eq!(all_ids(&full), all_ids(&chunked));
    assert_eq!(chunked.responses[2][1].prompt_index, 2);
    assert_eq!(chunked.responses[2][1].sample_index, 1);
}

#[test]
fn concurrent_batches_give_the_same_responses_and_consistent_progress() {
    let m = model(64);
    let ps: Vec<Vec<u32>> = (0..7u32)
        .map(|i| (0..1 + i % 4).map(|t| 3 + (i * 5 + t) % 50).collect())
        .collect();
    let one = Generator::new(&m, sampling(5).with_prompt_batch_size(4))
        .unwrap()
        .generate(&ps)
        .unwrap();
    for concurrent in [2, 3, 8] {
        let mut reports = Vec::new();
        let streams: Vec<u64> = (0..ps.len() as u64).collect();
        let out = Generator::new(
            &m,
            sampling(5)
                .with_prompt_batch_size(4)
                .with_concurrent_batches(concurrent),
        )
        .unwrap()
        .generate_with_progress(&ps, &streams, |p| reports.push(*p))
        .unwrap();
        assert_eq!(all_ids(&one), all_ids(&out), "concurrent {concurrent}");
        for (p, rs) in out.responses.iter().enumerate() {
            for (k, g) in rs.iter().enumerate() {
                assert_eq!((g.prompt_index, g.sample_index), (p, k));
            }
        }
        // Progress is cumulative over the concurrent batches and ends complete.
        let last = reports.last().unwrap();
        assert_eq!(last.finished_responses, 21);
        assert_eq!(last.total_responses, 21);
        assert_eq!(last.active_rows, 0);
        assert_eq!(last.generated_tokens, out.stats.generated_tokens);
        assert!(
            reports
                .windows(2)
                .all(|w| w[0].generated_tokens < w[1].generated_tokens)
        );
        assert!(out.stats.wall_seconds > 0.0);
    }
    let bad = Generator::new(&m, sampling(5).with_concurrent_batches(0)).unwrap_err();
    assert!(bad.to_string().contains("concurrent_batches"), "{bad}");
}

#[test]
fn stop_tokens_end_rows_early_and_lengths_are_capped() {
    let m = model(64);
    let greedy = GenerationConfig::new()
        .with_sampler(SamplerConfig::greedy())
        .with_max_new_tokens(10);
    let free = Generator::new(&m, greedy.clone())
        .unwrap()
        .generate(&prompts())
        .unwrap();
    for g in free.responses.iter().flatten() {
        assert_eq!(g.token_ids.len(), 10);
        assert_eq!(g.finish_reason, FinishReason::Length);
    }
    // Stop on the 4th token of prompt 0: that row ends there (stop token kept), others go on
    // (prefixes equal, since finished rows are dropped from the batch without disturbing others).
    let stop = free.responses[0][0].token_ids[3];
    let first = free.responses[0][0]
        .token_ids
        .iter()
        .position(|&t| t == stop)
        .unwrap();
    let out = Generator::new(&m, greedy.with_stop_token_ids(vec![stop]))
        .unwrap()
        .generate(&prompts())
        .unwrap();
    let r0 = &out.responses[0][0];
    assert_eq!(r0.finish_reason, FinishReason::StopToken);
    assert_eq!(r0.token_ids, free.responses[0][0].token_ids[..=first]);
    for (p, r) in out.responses.iter().enumerate() {
        let want = &free.responses[p][0].token_ids;
        let cut = want.iter().position(|&t| t == stop).map_or(10, |i| i + 1);
        assert_eq!(r[0].token_ids, want[..cut], "prompt {p}");
    }
    // max_new_tokens = 0 gives empty responses.
    let none = Generator::new(&m, GenerationConfig::new().with_max_new_tokens(0))
        .unwrap()
        .generate(&prompts())
        .unwrap();
    assert!(
        none.responses
            .iter()
            .flatten()
            .all(|g| g.token_ids.is_empty())
    );
}

#[test]
fn logprobs_equal_the_model_distribution_at_temperature_one() {
    let m = model(64);
    let cfg = GenerationConfig::new()
        .with_sampler(SamplerConfig::new().with_seed(1))
        .with_max_new_tokens(8)
        .with_num_responses(2);
    let out = Generator::new(&m, cfg)
        .unwrap()
        .generate(&prompts())
        .unwrap();
    let device = Default::default();
    for g in out.responses.iter().flatten() {
        let mut seq = prompts()[g.prompt_index].clone();
        let n = seq.len();
        seq.extend(&g.token_ids);
        let ids: Vec<i64> = seq.iter().map(|&t| t as i64).collect();
        let ids = Tensor::<Flex, 2, Int>::from_data(TensorData::new(ids, [1, seq.len()]), &device);
        let lp = m
            .next_token_logprobs(ids, None)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for (t, &want) in lp[n - 1..].iter().enumerate() {
            assert!(
                (g.logprobs[t] - want).abs() < 1e-4,
                "token {t}: {} vs {want}",
                g.logprobs[t]
            );
        }
    }
}

#[test]
fn stop_strings_and_text_with_a_tokenizer() {
    let tok = Tokenizer::builtin_tiny().unwrap();
    let m = model(tok.vocab_size());
    let prompt = tok.encode("Hello there").unwrap();
    let base = GenerationConfig::new()
        .with_sampler(SamplerConfig::greedy())
        .with_max_new_tokens(16);
    let free = Generator::new(&m, base.clone())
        .unwrap()
        .with_tokenizer(&tok)
        .generate(std::slice::from_ref(&prompt))
        .unwrap();
    let g = &free.responses[0][0];
    assert_eq!(g.text, tok.decode(&g.token_ids, true).unwrap());
    // Use a piece of the generated text as a stop string.
    let text = tok.decode(&g.token_ids[..6], false).unwrap();
    let needle: String = text
        .chars()
        .rev()
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let cfg = base.with_stop_strings(vec![needle.clone()]);
    assert!(
        Generator::new(&m, cfg.clone())
            .unwrap()
            .generate(std::slice::from_ref(&prompt))
            .is_err()
    );
    let out = Generator::new(&m, cfg)
        .unwrap()
        .with_tokenizer(&tok)
        .generate(&[prompt])
        .unwrap();
    let s = &out.responses[0][0];
    assert_eq!(s.finish_reason, FinishReason::StopString);
    assert!(s.token_ids.len() <= 6);
    assert!(tok.decode(&s.token_ids, false).unwrap().contains(&needle));
    assert_eq!(s.token_ids, g.token_ids[..s.token_ids.len()]);
}

#[test]
fn bad_input_is_an_error() {
    let m = model(64);
    let g = Generator::new(&m, GenerationConfig::new()).unwrap();
    assert!(g.generate(&[vec![]]).is_err());
    assert!(g.generate(&[vec![64]]).is_err());
    assert!(g.generate_with_progress(&[vec![1]], &[], |_| {}).is_err());
    assert!(Generator::new(&m, GenerationConfig::new().with_num_responses(0)).is_err());
}

#[test]
fn non_finite_logits_are_an_error_naming_the_step_and_row() {
    let mut m = model(64);
    let hidden = m.config().hidden_size;
    let nan = Tensor::<Flex, 1>::from_data(
        TensorData::new(vec![f32::NAN; hidden], [hidden]),
        &Default::default(),
    );
    m.model.norm.weight = burn::module::Param::from_tensor(nan);
    let err = Generator::new(&m, sampling(1))
        .unwrap()
        .generate(&prompts())
        .unwrap_err();
    match &err {
        kiln_sampling::Error::NonFiniteLogits {
            step,
            prompt,
            sample,
            what,
        } => {
            assert_eq!((*step, *what), (1, "NaN"));
            assert!(*prompt < 3 && *sample < 3);
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("decoding step 1"), "{err}");
    assert_eq!(
        kiln_sampling::non_finite_logits(&[0.0, f32::NEG_INFINITY]),
        None
    );
    assert_eq!(
        kiln_sampling::non_finite_logits(&[f32::NEG_INFINITY; 3]),
        Some("all -inf")
    );
    assert_eq!(
        kiln_sampling::non_finite_logits(&[1.0, f32::INFINITY]),
        Some("+inf")
    );
}

#[test]
fn new_tokens_are_clamped_to_the_context_and_too_long_prompts_are_an_error() {
    let m = model(64); // max_position_embeddings 128
    let long: Vec<u32> = (0..120).map(|i| 3 + (i % 50)).collect();
    let config = GenerationConfig::new()
        .with_sampler(SamplerConfig::greedy())
        .with_max_new_tokens(20);
    let g = Generator::new(&m, config).unwrap();
    let out = g.generate(std::slice::from_ref(&long)).unwrap();
    let r = &out.responses[0][0];
    assert!(r.token_ids.len() <= 8, "{} new tokens", r.token_ids.len());
    if r.token_ids.len() == 8 {
        assert_eq!(r.finish_reason, FinishReason::Length);
    }
    assert_eq!(out.stats.clamped_rows, 1);
    let too_long: Vec<u32> = (0..128).map(|i| 3 + (i % 50)).collect();
    let err = g.generate(&[too_long]).unwrap_err();
    assert!(
        matches!(
            err,
            kiln_sampling::Error::PromptTooLong {
                len: 128,
                max: 128,
                ..
            }
        ),
        "{err}"
    );
}
