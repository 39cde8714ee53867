//! Greedy decoding equals Hugging Face `generate(do_sample=False)` token for token on the fixture
//! checkpoints (raw and chat prompts, single and batched), with and without the KV cache.
//! Expected ids: `tests/fixtures/sampling/greedy.json`, made by `scripts/make_sampling_fixtures.py`.

use std::path::PathBuf;

use burn::backend::Flex;
use kiln_data::{ChatTemplate, Message, Tokenizer};
use kiln_model::LlamaForCausalLM;
use kiln_sampling::{FinishReason, GenerationConfig, Generator, SamplerConfig};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ids(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("tests/fixtures/sampling/greedy.json"))
        .expect("greedy.json fixture");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn config(case: &Value, use_cache: bool) -> GenerationConfig {
    let stop: Vec<u32> = ids(&Value::Array(vec![case["stop_token_ids"].clone()])).remove(0);
    GenerationConfig::new()
        .with_sampler(SamplerConfig::greedy())
        .with_max_new_tokens(case["max_new_tokens"].as_u64().unwrap() as usize)
        .with_stop_token_ids(stop)
        .with_pad_token_id(case["pad_token_id"].as_u64().unwrap() as u32)
        .with_use_cache(use_cache)
}

#[test]
fn greedy_matches_transformers_single_and_batched() {
    let device = Default::default();
    let cases = cases();
    assert_eq!(cases.len(), 4);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let dir = root().join(case["checkpoint"].as_str().unwrap());
        let model = LlamaForCausalLM::<Flex>::from_pretrained(&dir, &device).unwrap();
        let prompts = ids(&case["prompts"]);
        let expected = ids(&case["expected"]);
        let stop = config(case, true).stop_token_ids;
        for use_cache in [true, false] {
            let generator = Generator::new(&model, config(case, use_cache)).unwrap();
            // Batched: all prompts left-padded together.
            let batched = generator.generate(&prompts).unwrap();
            for (p, want) in expected.iter().enumerate() {
                let got = &batched.responses[p][0];
                assert_eq!(
                    &got.token_ids, want,
                    "{name} prompt {p} batched cache={use_cache}"
                );
                let reason = if stop.contains(want.last().unwrap()) {
                    FinishReason::StopToken
                } else {
                    FinishReason::Length
                };
                assert_eq!(got.finish_reason, reason, "{name} prompt {p}");
                // Single: each prompt alone gives the same ids.
                let alone = generator
                    .generate(std::slice::from_ref(&prompts[p]))
                    .unwrap();
                assert_eq!(
                    alone.responses[0][0].token_ids, got.token_ids,
                    "{name} prompt {p} alone cache={use_cache}"
                );
            }
        }
    }
}

#[test]
fn chat_prompts_are_the_template_encoding() {
    let tok = Tokenizer::builtin_tiny().unwrap();
    let template = ChatTemplate::llama3(&tok).unwrap();
    let case = cases()
        .into_iter()
        .find(|c| c["kind"] == "chat")
        .expect("a chat case");
    let prompts = ids(&case["prompts"]);
    for (m, want) in case["messages"].as_array().unwrap().iter().zip(&prompts) {
        let chat = template
            .encode(&tok, &[Message::user(m.as_str().unwrap())], true)
            .unwrap();
        assert_eq!(&chat.ids, want);
    }
    // The stop ids the chat case uses start with <|eot_id|> and <|end_of_text|>.
    let stop = config(&case, true).stop_token_ids;
    assert_eq!(&stop[..2], &template.stop_ids()[..]);
}

/// A checkpoint with the real Llama-3.1 template (system block, pinned `date_string`): the prompt
/// ids and the greedy continuation equal transformers'. Fixture:
/// `tests/fixtures/templates/greedy_llama31.json` (`scripts/make_template_generate_fixture.py`).
#[test]
fn llama31_template_chat_equals_transformers() {
    let text = std::fs::read_to_string(root().join("tests/fixtures/templates/greedy_llama31.json"))
        .expect("greedy_llama31.json fixture");
    let fx: Value = serde_json::from_str(&text).unwrap();
    let template_dir = root().join(fx["template_dir"].as_str().unwrap());
    let model_dir = root().join(fx["model_dir"].as_str().unwrap());
    let tok = Tokenizer::from_model_dir(&template_dir).unwrap();
    let mut template = ChatTemplate::from_model_dir(&template_dir, &tok).unwrap();
    for (k, v) in fx["vars"].as_object().unwrap() {
        template = template.with_var(k.clone(), v.clone());
    }
    let stop = ids(&Value::Array(vec![fx["stop_ids"].clone()])).remove(0);
    let model = LlamaForCausalLM::<Flex>::from_pretrained(&model_dir, &Default::default()).unwrap();
    let config = GenerationConfig::new()
        .with_sampler(SamplerConfig::greedy())
        .with_max_new_tokens(fx["max_new_tokens"].as_u64().unwrap() as usize)
        .with_stop_token_ids(stop)
        .with_pad_token_id(tok.pad_id().unwrap());
    let generator = Generator::new(&model, config).unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for case in cases {
        let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
        let prompt = template.encode(&tok, &messages, true).unwrap().ids;
        let want_prompt = ids(&Value::Array(vec![case["prompt_ids"].clone()])).remove(0);
        assert_eq!(prompt, want_prompt, "prompt ids of {messages:?}");
        let out = generator.generate(std::slice::from_ref(&prompt)).unwrap();
        let want = ids(&Value::Array(vec![case["generated_ids"].clone()])).remove(0);
        assert_eq!(
            out.responses[0][0].token_ids, want,
            "greedy ids of {messages:?}"
        );
    }
}
