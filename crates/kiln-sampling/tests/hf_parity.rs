//! Greedy decoding equals Hugging Face `generate(do_sample=False)` token for token on the fixture
//! checkpoints (raw and chat prompts, single and batched), with and without the KV cache, for
//! Llama and Qwen2.
//! Expected ids: `tests/fixtures/sampling/greedy.json`, made by `scripts/make_sampling_fixtures.py`.
#![cfg(test)]

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use kiln_data::{ChatTemplate, Message, Tokenizer};
use kiln_model::{CausalLm, LlamaForCausalLM, Qwen2ForCausalLM};
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

fn cases_in(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(file)).expect("greedy fixture");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn cases() -> Vec<Value> {
    cases_in("tests/fixtures/sampling/greedy.json")
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

/// Every case of `cases`, batched and alone, with and without the cache, on the model `load`
/// gives for the case's checkpoint.
fn check_greedy<M: CausalLm<Flex> + Sync>(cases: &[Value], load: impl Fn(&Path) -> M) {
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let model = load(&root().join(case["checkpoint"].as_str().unwrap()));
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
fn greedy_matches_transformers_single_and_batched() {
    let cases = cases();
    assert_eq!(cases.len(), 4);
    check_greedy(&cases, |dir| {
        LlamaForCausalLM::<Flex>::from_pretrained(dir, &Default::default()).unwrap()
    });
}

/// The second architecture through the same generator: Qwen2 (q/k/v biases; tied and untied
/// heads) greedy ids equal transformers' (`tests/fixtures/qwen2/greedy.json`, made by
/// `scripts/make_qwen2_fixtures.py`).
#[test]
fn qwen2_greedy_matches_transformers_single_and_batched() {
    let cases = cases_in("tests/fixtures/qwen2/greedy.json");
    assert_eq!(cases.len(), 2);
    check_greedy(&cases, |dir| {
        Qwen2ForCausalLM::<Flex>::from_pretrained(dir, &Default::default()).unwrap()
    });
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
