//! Every kiln-data reader of outside files returns a value or an error, never panics or hangs, on
//! arbitrary bytes and on mutated valid files: JSON Lines stage files (all six record kinds),
//! JSON files (`atomic::read_json`), `--messages` conversation files, a model directory's
//! `tokenizer_config.json` / `chat_template.jinja` / `generation_config.json` / `config.json`
//! (template source, special tokens, stop ids, the compiled template rendered with real
//! conversations), chat templates built from Jinja fragments, and `tokenizer.json`.
//!
//! Each property runs a bounded number of cases on its own thread under a time limit, so a hang
//! fails the test instead of stalling CI.
#![cfg(test)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kiln_data::hf_files::{find_chat_template, read_eos_token_ids, read_special_tokens};
use kiln_data::message::{parse_messages, read_messages};
use kiln_data::{
    AnnotatedRecord, ChatEncoder, ChatTemplate, Content, GenerationRecord, JsonlReader, Message,
    PairRecord, PromptRecord, RankedRecord, SftRecord, TemplateChoice, TemplateSource, Tokenizer,
    TruncationConfig, read_jsonl, write_jsonl,
};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::Value;

// ------------------------------------------------------------------------------------------------
// Harness: fixtures, scratch directories, the time limit.
// ------------------------------------------------------------------------------------------------

fn fixture(rel: &str) -> PathBuf {
    kiln_test_support::fixture(rel)
}

fn fixture_text(rel: &str) -> String {
    std::fs::read_to_string(fixture(rel)).unwrap()
}

use kiln_test_support::never_panic::{self, *};

/// Byte edits splicing in this file's [`SPLICES`].
fn byte_edits() -> impl Strategy<Value = Vec<ByteEdit>> {
    never_panic::byte_edits(SPLICES)
}

/// JSON edits putting this file's [`WEIRD_JSON`] in place of values.
fn json_edits() -> impl Strategy<Value = Vec<JsonEdit>> {
    never_panic::json_edits(WEIRD_JSON)
}

/// The tokenizer of a fixture directory, loaded once.
fn tokenizer(dir: &str) -> Tokenizer {
    static CACHE: OnceLock<std::sync::Mutex<BTreeMap<String, Tokenizer>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(dir.to_string())
        .or_insert_with(|| Tokenizer::from_model_dir(fixture(dir)).unwrap())
        .clone()
}

/// Fixture directories with a tokenizer: Llama-3 special tokens, and ChatML ones.
const TOKENIZER_DIRS: &[&str] = &["templates/llama3.0", "templates/chatml"];

// ------------------------------------------------------------------------------------------------
// Mutation dictionaries (the engine is tests/support/never_panic.rs).
// ------------------------------------------------------------------------------------------------

/// Byte strings worth inserting: JSON and Jinja syntax, odd numbers, broken UTF-8.
const SPLICES: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b",",
    b":",
    b"\n",
    b"\r\n",
    b" ",
    b"null",
    b"-",
    b"1e999",
    b"-0",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    b"{%",
    b"%}",
    b"{{",
    b"}}",
    b"{#",
    b"-%}",
    b"{%-",
    b"{%-%}",
    b"\\u",
    b"\\ud800",
    b"\xee\x80\x80",
];

/// JSON texts that replace a value, or follow a duplicated key: other types, numbers out of
/// every integer range, non-finite floats, broken strings, shapes the readers look for.
const WEIRD_JSON: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1",
    "7",
    "-0",
    "0.5",
    "-2.5",
    "1e308",
    "-1e308",
    "1e999",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "\"\"",
    "\"x\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\ue000\"",
    "\"<|eot_id|>\"",
    "\"<|im_end|>\"",
    "\"{{ raise_exception('no') }}\"",
    "\"{%-%}\"",
    "\"{% for m in messages %}{{ m.content }}{% endfor %}\"",
    "\"user\"",
    "\"assistant\"",
    "\"all-linear\"",
    "[]",
    "{}",
    "[1,2,3]",
    "[-1]",
    "[null]",
    "[\"a\"]",
    "[[]]",
    "{\"a\":null}",
    "{\"content\":\"<|im_end|>\"}",
    "{\"content\":7}",
    "[{\"role\":\"user\",\"content\":\"hi\"}]",
    "[{\"role\":\"tool\",\"content\":\"hi\"}]",
    "[{\"name\":\"default\",\"template\":\"{{ messages[0].content }}\"}]",
    "[{\"name\":\"x\"}]",
    "[{\"name\":\"default\",\"template\":3}]",
];

// ------------------------------------------------------------------------------------------------
// Conversations to render.
// ------------------------------------------------------------------------------------------------

fn content() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("What colour is the sky?".to_string()),
        Just("  Blue.\n".to_string()),
        Just(String::new()),
        Just("<|eot_id|>".to_string()),
        Just("<|im_end|>".to_string()),
        Just("{{ bos_token }}{% if %}".to_string()),
        Just("é😀\u{1f}\u{a0}".to_string()),
        Just("\u{E000}".to_string()),
        "\\PC{0,24}",
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (0usize..3, content()).prop_map(|(r, c)| match r {
        0 => Message::system(c),
        1 => Message::user(c),
        _ => Message::assistant(c),
    })
}

fn conversation() -> impl Strategy<Value = Vec<Message>> {
    prop::collection::vec(message(), 0..5)
}

/// Everything a loaded template does with a conversation; errors are fine, panics are not.
fn exercise(template: &ChatTemplate, tok: &Tokenizer, msgs: &[Message]) {
    for add in [false, true] {
        let _ = template.render(msgs, add);
        let _ = template.encode(tok, msgs, add);
    }
    let split = msgs.len() / 2;
    let _ = template.encode_prompt_completion(tok, &msgs[..split], &msgs[split..]);
    let _ = template.stop_ids();
    let _ = template.pad_id(tok);
    let truncation = TruncationConfig {
        max_prompt_len: 8,
        max_total_len: 24,
    };
    if let Ok(enc) = ChatEncoder::new(tok.clone(), template.clone(), truncation) {
        let prompt = Content::Messages(msgs[..split].to_vec());
        let completion = Content::Messages(msgs[split..].to_vec());
        let _ = enc.generation_prompt(&prompt);
        let _ = enc.prompt_completion(&prompt, &completion);
        let _ = enc.prompt_completion(&prompt, &Content::from("Blue."));
        let _ = enc.reward_example(&prompt, &completion);
        let _ = enc.sft(&SftRecord {
            messages: msgs.to_vec(),
        });
        let _ = enc.ranked(&RankedRecord {
            prompt: prompt.clone(),
            responses: vec!["a".into(), String::new()],
            rewards: vec![1.0, 0.0],
        });
    }
}

mod model_dirs;
mod regressions;
mod stage_files;
mod templates;
mod tokenizer_json;
