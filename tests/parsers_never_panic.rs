//! The loop's readers of outside files return a value or an error, never panic or hang, on
//! arbitrary bytes and on mutated valid files: the `--config FILE.json` of
//! `examples/iterative_dpo` (through `cli::parse`, which reads, merges and validates it),
//! `<out>/config.json` read back on resume (`LoopConfig`), and the stage files the loop reads
//! back with `read_json` (evaluations). `generate --messages` files are read by
//! `kiln_data::message::read_messages`, covered in kiln-data's `parsers_never_panic.rs`.
//!
//! Each case runs on its own thread under a time limit, so a hang fails the test.

#[path = "../examples/iterative_dpo.rs"]
#[allow(dead_code, unused_imports)]
mod iterative_dpo;

use std::panic::resume_unwind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

use iterative_dpo::cli::parse;
use iterative_dpo::{Algorithm, Annotator, Evaluation, LoopConfig, Reference};
use kiln::data::atomic::read_json;
use kiln::data::{LengthUnit, SelectionStrategy, TemplateChoice};
use kiln::losses::DpoLoss;
use kiln::model::LoraTarget;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::Value;

// ------------------------------------------------------------------------------------------------
// Harness: scratch directories, the time limit.
// ------------------------------------------------------------------------------------------------

/// Longest a single case may run (cases take milliseconds).
const LIMIT: Duration = Duration::from_secs(20);

/// A fresh directory per case, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kiln-loop-never-panic-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `cases` cases per property (`PROPTEST_CASES` overrides it, for a longer local search);
/// failures are reported (with the shrunk input), not persisted to a regressions file: the inputs
/// found are kept as the `#[test]`s at the end of this file.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Runs `f` on its own thread: its panic is re-raised here (proptest records it as a failure and
/// shrinks), and running past [`LIMIT`] fails the case as a hang.
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("still running after {LIMIT:?}: a hang"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => resume_unwind(panic),
            Ok(()) => panic!("the worker thread ended without a result"),
        },
    }
}

// ------------------------------------------------------------------------------------------------
// Mutations: bytes, and JSON values (the same as kiln-data's parsers_never_panic.rs).
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

#[derive(Debug, Clone)]
enum ByteEdit {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, &'static [u8]),
    Delete(Index, usize),
    Truncate(Index),
    Duplicate(Index, usize),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| ByteEdit::Flip(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        (any::<Index>(), select(SPLICES)).prop_map(|(i, s)| ByteEdit::Insert(i, s)),
        (any::<Index>(), 1usize..16).prop_map(|(i, n)| ByteEdit::Delete(i, n)),
        any::<Index>().prop_map(ByteEdit::Truncate),
        (any::<Index>(), 1usize..32).prop_map(|(i, n)| ByteEdit::Duplicate(i, n)),
    ]
}

fn apply_bytes(mut data: Vec<u8>, edits: &[ByteEdit]) -> Vec<u8> {
    for e in edits {
        let len = data.len();
        let at = |i: &Index| i.index(len + 1);
        match e {
            ByteEdit::Flip(i, bit) if len > 0 => data[i.index(len)] ^= 1 << bit,
            ByteEdit::Set(i, b) if len > 0 => data[i.index(len)] = *b,
            ByteEdit::Insert(i, s) => {
                let p = at(i);
                data.splice(p..p, s.iter().copied());
            }
            ByteEdit::Delete(i, n) => {
                let p = at(i);
                data.drain(p..(p + n).min(len));
            }
            ByteEdit::Truncate(i) => data.truncate(at(i)),
            ByteEdit::Duplicate(i, n) => {
                let p = at(i);
                let piece = data[p..(p + n).min(len)].to_vec();
                data.splice(p..p, piece);
            }
            _ => {}
        }
    }
    data
}

fn byte_edits() -> impl Strategy<Value = Vec<ByteEdit>> {
    prop::collection::vec(byte_edit(), 0..4)
}

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

#[derive(Debug, Clone)]
enum JsonEdit {
    Replace(Index, &'static str),
    DuplicateKey(Index, Index, &'static str),
    Remove(Index),
    Nest(Index, usize, bool),
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        4 => (any::<Index>(), select(WEIRD_JSON)).prop_map(|(i, w)| JsonEdit::Replace(i, w)),
        2 => (any::<Index>(), any::<Index>(), select(WEIRD_JSON))
            .prop_map(|(i, k, w)| JsonEdit::DuplicateKey(i, k, w)),
        2 => any::<Index>().prop_map(JsonEdit::Remove),
        1 => (any::<Index>(), select(vec![2usize, 64, 127, 128, 129, 1000]), any::<bool>())
            .prop_map(|(i, d, o)| JsonEdit::Nest(i, d, o)),
    ]
}

fn json_edits() -> impl Strategy<Value = Vec<JsonEdit>> {
    prop::collection::vec(json_edit(), 1..4)
}

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Idx(usize),
}

fn all_paths(v: &Value, at: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                at.push(Seg::Key(k.clone()));
                all_paths(c, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                at.push(Seg::Idx(i));
                all_paths(c, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn node<'a>(v: &'a Value, path: &[Seg]) -> &'a Value {
    path.iter().fold(v, |v, s| match s {
        Seg::Key(k) => &v[k.as_str()],
        Seg::Idx(i) => &v[*i],
    })
}

fn node_mut<'a>(v: &'a mut Value, path: &[Seg]) -> &'a mut Value {
    path.iter().fold(v, |v, s| match s {
        Seg::Key(k) => &mut v[k.as_str()],
        Seg::Idx(i) => &mut v[*i],
    })
}

const MARK: &str = "@@kiln-mark@@";
const KEY: &str = "@@kiln-key@@";

/// Applies JSON-level edits to a JSON text, stopping at the first one that leaves invalid JSON.
fn mutate_json(text: &str, edits: &[JsonEdit]) -> String {
    let mut text = text.to_string();
    for e in edits {
        let Ok(mut v) = serde_json::from_str::<Value>(&text) else {
            break;
        };
        let mut paths = Vec::new();
        all_paths(&v, &mut Vec::new(), &mut paths);
        let marked = |v: &Value| serde_json::to_string(v).unwrap();
        text = match e {
            JsonEdit::Replace(i, raw) => {
                *node_mut(&mut v, i.get::<Vec<Seg>>(&paths)) = Value::String(MARK.into());
                marked(&v).replacen(&format!("\"{MARK}\""), raw, 1)
            }
            JsonEdit::DuplicateKey(i, k, raw) => {
                let objects: Vec<&Vec<Seg>> = paths
                    .iter()
                    .filter(|p| node(&v, p).as_object().is_some_and(|o| !o.is_empty()))
                    .collect();
                if objects.is_empty() {
                    continue;
                }
                let path = (*i.get(&objects)).clone();
                let node = node_mut(&mut v, &path);
                let keys: Vec<String> = node.as_object().unwrap().keys().cloned().collect();
                let key = k.get(&keys).clone();
                node[KEY] = Value::String(MARK.into());
                marked(&v).replacen(
                    &format!("\"{KEY}\":\"{MARK}\""),
                    &format!("{}:{raw}", Value::String(key)),
                    1,
                )
            }
            JsonEdit::Remove(i) => match i.get::<Vec<Seg>>(&paths).split_last() {
                None => String::new(),
                Some((last, parent)) => {
                    let parent = node_mut(&mut v, parent);
                    match last {
                        Seg::Key(k) => {
                            parent.as_object_mut().unwrap().remove(k);
                        }
                        Seg::Idx(j) => {
                            parent.as_array_mut().unwrap().remove(*j);
                        }
                    }
                    marked(&v)
                }
            },
            JsonEdit::Nest(i, depth, objects) => {
                let node = node_mut(&mut v, i.get::<Vec<Seg>>(&paths));
                let inner = marked(node);
                *node = Value::String(MARK.into());
                let (open, close) = if *objects {
                    ("{\"a\":", "}")
                } else {
                    ("[", "]")
                };
                let raw = format!("{}{inner}{}", open.repeat(*depth), close.repeat(*depth));
                marked(&v).replacen(&format!("\"{MARK}\""), &raw, 1)
            }
        };
    }
    text
}

/// A mutated JSON document: JSON-level edits, then byte-level ones.
fn mutated(text: &str, json: &[JsonEdit], bytes: &[ByteEdit]) -> Vec<u8> {
    apply_bytes(mutate_json(text, json).into_bytes(), bytes)
}

// ------------------------------------------------------------------------------------------------
// The loop's `--config` file and `<out>/config.json`.
// ------------------------------------------------------------------------------------------------

/// Valid configurations in every mode and with every enum's variants, as JSON.
fn valid_configs() -> &'static [String] {
    static CONFIGS: OnceLock<Vec<String>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let base = LoopConfig::default();
        let configs = [
            base.clone(),
            LoopConfig {
                algorithm: Algorithm::Rrhf,
                loss: DpoLoss::Robust {
                    label_smoothing: 0.1,
                },
                choose: SelectionStrategy::MaxMinP {
                    lambda: 0.05,
                    unit: LengthUnit::Chars,
                },
                reference: Reference::Previous,
                lora_rank: 4,
                lora_targets: vec![LoraTarget::Q, LoraTarget::V],
                template_date: Some("2024-07-26".into()),
                ..base.clone()
            },
            LoopConfig {
                annotator: Annotator::Pairwise,
                policy: Some(PathBuf::from("models/policy")),
                reward_model: Some(PathBuf::from("models/rm")),
                prompts: Some(PathBuf::from("prompts.jsonl")),
                annotator_model: Some(PathBuf::from("models/pairwise")),
                chat_template: TemplateChoice::File(PathBuf::from("t.jinja")),
                ..base.clone()
            },
            LoopConfig {
                policy: Some(PathBuf::from("models/policy")),
                loss: DpoLoss::Ipo,
                choose: SelectionStrategy::Random,
                chat_template: TemplateChoice::Llama3,
                ..base
            },
        ];
        let mut texts: Vec<String> = configs
            .iter()
            .map(|c| serde_json::to_string_pretty(c).unwrap())
            .collect();
        // A partial file, as users write them.
        texts.push(
            r#"{"k": 6, "beta": 0.3, "offline": false, "choose": {"type": "max_max"}}"#.into(),
        );
        texts
    })
}

/// Reads `path` as `--config` (with and without flags on top) and as `<out>/config.json`.
fn read_loop_config(path: &Path) {
    let Some(p) = path.to_str() else {
        return;
    };
    let _ = parse(&["--config", p]);
    let _ = parse(&["--k", "4", "--config", p, "--offline"]);
    if let Ok(cfg) = read_json::<LoopConfig>(path) {
        let _ = cfg.validate();
        let _ = cfg.mode();
        let _ = cfg.lora();
        let _ = cfg.template_clock();
    }
    let _ = read_json::<Evaluation>(path);
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
            iteration: 2,
            gold_reward_mean: Some(1.5),
            kl_to_reference: f64::NAN,
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
