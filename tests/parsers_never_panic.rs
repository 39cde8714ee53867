//! The loop's readers of outside files return a value or an error, never panic or hang, on
//! arbitrary bytes and on mutated valid files: the `--config FILE.json` of
//! `examples/iterative_dpo` (through `cli::parse`, which reads, merges and validates it),
//! `<out>/config.json` read back (the library's `OnlineConfig`, the example's `LoopConfig`), and
//! the stage files the loop reads back with `read_json` (evaluations, summaries). `generate --messages` files are read by
//! `kiln_data::message::read_messages`, covered in kiln-data's `tests/parsers_never_panic/`.
//!
//! Each case runs on its own thread under a time limit, so a hang fails the test.
#![cfg(test)]

#[path = "../examples/iterative_dpo.rs"]
#[allow(dead_code, unused_imports)]
mod iterative_dpo;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use iterative_dpo::LoopConfig;
use iterative_dpo::cli::parse;
use kiln::data::atomic::read_json;
use kiln::data::{LengthUnit, SelectionStrategy, TemplateChoice};
use kiln::losses::DpoLoss;
use kiln::model::LoraConfig;
use kiln::model::LoraTarget;
use kiln::online::{Algorithm, Evaluation, OnlineConfig, ReferenceChoice, Summary};
use kiln::reward::AnnotatorKind;
use proptest::prelude::*;
use proptest::sample::Index;

// ------------------------------------------------------------------------------------------------
// Harness: scratch directories, the time limit.
// ------------------------------------------------------------------------------------------------

use kiln_test_support::never_panic::{self, *};

/// Byte edits splicing in this file's [`SPLICES`].
fn byte_edits() -> impl Strategy<Value = Vec<ByteEdit>> {
    never_panic::byte_edits(SPLICES)
}

/// JSON edits putting this file's [`WEIRD_JSON`] in place of values.
fn json_edits() -> impl Strategy<Value = Vec<JsonEdit>> {
    never_panic::json_edits(WEIRD_JSON)
}

// ------------------------------------------------------------------------------------------------
// Mutation dictionaries (the engine is tests/support/never_panic.rs, shared with kiln-data and kiln-model).
// ------------------------------------------------------------------------------------------------

/// Byte strings worth inserting: JSON syntax, odd numbers, broken UTF-8.
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
    b" ",
    b"null",
    b"-",
    b"1e999",
    b"-0",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\\u",
    b"\\ud800",
];

/// JSON texts that replace a value, or follow a duplicated key: other types, numbers out of
/// every range, and the string forms the config's enums parse.
const WEIRD_JSON: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1",
    "2",
    "7",
    "-0",
    "0.5",
    "-2.5",
    "1e308",
    "-1e308",
    "1e999",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "\"\"",
    "\"x\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"dpo\"",
    "\"rrhf\"",
    "\"bt\"",
    "\"pairwise\"",
    "\"sft\"",
    "\"previous\"",
    "\"sigmoid\"",
    "\"cdpo:0.1\"",
    "\"cdpo:\"",
    "\"cdpo:nan\"",
    "\"robust:inf\"",
    "\"robust:-1\"",
    "\"ipo:3\"",
    "\"max_min_p:0.05\"",
    "\"max_min_p:-1:chars\"",
    "\"max_min_p\"",
    "\"checkpoint\"",
    "\"llama3\"",
    "\"2024-02-30\"",
    "\"2024-07-26\"",
    "\"99999999999-01-01\"",
    "\"-1-1-1\"",
    "\"q\"",
    "[]",
    "{}",
    "[\"q\",\"v\"]",
    "[\"qq\"]",
    "[1,2,3]",
    "[null]",
    "{\"type\":\"max_min\"}",
    "{\"type\":\"max_min_p\",\"lambda\":-1,\"unit\":\"chars\"}",
    "{\"type\":\"max_min_p\",\"lambda\":1e999}",
    "{\"type\":\"nope\"}",
    "{\"a\":null}",
];

// ------------------------------------------------------------------------------------------------
// The loop's `--config` file and `<out>/config.json`.
// ------------------------------------------------------------------------------------------------

/// Valid configurations in every mode and with every enum's variants, as JSON.
fn valid_configs() -> &'static [String] {
    static CONFIGS: OnceLock<Vec<String>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let base = LoopConfig::default();
        let mut rrhf = base.clone();
        rrhf.online.algorithm = Algorithm::Rrhf;
        rrhf.online.dpo.loss.loss = DpoLoss::Robust {
            label_smoothing: 0.1,
        };
        rrhf.online.choose = SelectionStrategy::MaxMinP {
            lambda: 0.05,
            unit: LengthUnit::Chars,
        };
        rrhf.online.reference = ReferenceChoice::Sft;
        rrhf.online.lora = Some(LoraConfig::new(vec![LoraTarget::Q, LoraTarget::V]).with_rank(4));
        rrhf.online.template_date = Some("2024-07-26".into());
        let mut real = base.clone();
        real.task.annotator = AnnotatorKind::Pairwise;
        real.task.policy = Some(PathBuf::from("models/policy"));
        real.task.reward_model = Some(PathBuf::from("models/rm"));
        real.task.prompts = Some(PathBuf::from("prompts.jsonl"));
        real.task.annotator_model = Some(PathBuf::from("models/pairwise"));
        real.online.chat_template = TemplateChoice::File(PathBuf::from("t.jinja"));
        let mut on_policy = base.clone();
        on_policy.task.policy = Some(PathBuf::from("models/policy"));
        on_policy.online.dpo.loss.loss = DpoLoss::Ipo;
        on_policy.online.choose = SelectionStrategy::Random;
        on_policy.online.chat_template = TemplateChoice::Llama3;
        let mut texts: Vec<String> = [base, rrhf, real, on_policy]
            .iter()
            .map(|c| serde_json::to_string_pretty(&c.to_json()).unwrap())
            .collect();
        // A partial file, as users write them.
        texts.push(
            r#"{"generation": {"num_responses": 6}, "offline": false, "choose": {"type": "max_max"}}"#
                .into(),
        );
        texts
    })
}

/// Reads `path` as `--config` (with and without flags on top), as `<out>/config.json` (the
/// library's config and the task's) and as an evaluation.
fn read_loop_config(path: &Path) {
    let Some(p) = path.to_str() else {
        return;
    };
    let _ = parse(&["--config", p]);
    let _ = parse(&["--k", "4", "--config", p, "--no-offline"]);
    if let Ok(cfg) = read_json::<OnlineConfig>(path) {
        let _ = cfg.validate();
        let _ = cfg.template_clock();
    }
    if let Ok(v) = read_json::<serde_json::Value>(path)
        && let Ok(cfg) = LoopConfig::from_json(v)
    {
        let _ = cfg.validate();
        let _ = cfg.mode();
    }
    let _ = read_json::<Evaluation>(path);
    let _ = read_json::<Summary>(path);
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn loop_config_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        within(move || {
            let dir = Scratch::new();
            read_loop_config(&dir.write("config.json", &bytes));
        });
    }

    #[test]
    fn loop_config_survives_mutations(base in any::<Index>(), json in json_edits(), bytes in byte_edits()) {
        let text = base.get(valid_configs()).clone();
        within(move || {
            let dir = Scratch::new();
            read_loop_config(&dir.write("config.json", mutated(&text, &json, &bytes)));
        });
    }

    #[test]
    fn evaluations_survive_mutations(json in json_edits(), bytes in byte_edits()) {
        let text = serde_json::to_string(&Evaluation {
            gold_reward_mean: Some(1.5),
            kl_to_sft: f64::NAN,
            ..Evaluation::default()
        })
        .unwrap();
        within(move || {
            let dir = Scratch::new();
            read_loop_config(&dir.write("eval.json", mutated(&text, &json, &bytes)));
        });
    }
}

// ------------------------------------------------------------------------------------------------
// Regressions: inputs the properties found.
// ------------------------------------------------------------------------------------------------
