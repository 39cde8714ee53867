//! Sharded generation: the prompts split over 1, 2 or 3 peers give byte-identical
//! `generations.jsonl` records (every prompt samples from its own RNG stream).

use burn::backend::Flex;
use kiln_data::{ChatEncoder, Content, TruncationConfig};
use kiln_model::{LlamaConfig, LlamaForCausalLM};
use kiln_online::{SamplingSettings, Silent, generation_records};

#[test]
fn one_two_and_three_peers_write_the_same_bytes() {
    let enc = ChatEncoder::builtin_tiny(TruncationConfig {
        max_prompt_len: 32,
        max_total_len: 64,
    })
    .unwrap();
    let mut config = LlamaConfig::tiny(enc.tokenizer.vocab_size(), 32);
    config.eos_token_id = enc.stop_ids();
    config.pad_token_id = Some(enc.pad_id);
    let policy = LlamaForCausalLM::<Flex>::init_seeded(&config, 0.3, 5, &Default::default());
    let prompts: Vec<Content> = (0..7)
        .map(|i| Content::Text(format!("Question {i}: what is {} plus {i}?", i * 3)))
        .collect();
    let bytes = |peers: usize| {
        let settings = SamplingSettings {
            k: 3,
            max_new_tokens: 10,
            prompt_batch_size: 2,
            peers,
            ..SamplingSettings::default()
        };
        let records = generation_records(&policy, &enc, &prompts, &settings, 11, &Silent).unwrap();
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
