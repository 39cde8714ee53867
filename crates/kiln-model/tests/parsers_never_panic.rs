//! Every kiln-model reader of outside files returns a value or an error, never panics or hangs,
//! on arbitrary bytes and on mutated valid files: `config.json` (`LlamaConfig`), PEFT's
//! `adapter_config.json` (`AdapterConfig`), safetensors files (`CheckpointReader`: the 8-byte
//! header length, the JSON header and the data mutated), sharded checkpoints
//! (`model.safetensors.index.json`), and whole loads (`from_pretrained`, `load_adapter`) of
//! fixture directories with one file mutated.
//!
//! Each case runs on its own thread under a time limit, so a hang fails the test.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::backend::Flex;
use burn::tensor::DType;
use kiln_model::{
    AdapterConfig, CheckpointReader, LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification,
    MissingScore,
};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::Value;

type B = Flex;

// ------------------------------------------------------------------------------------------------
// Harness: fixtures, scratch directories, the time limit.
// ------------------------------------------------------------------------------------------------

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

fn fixture_bytes(rel: &str) -> Vec<u8> {
    std::fs::read(fixture(rel)).unwrap()
}

fn fixture_text(rel: &str) -> String {
    std::fs::read_to_string(fixture(rel)).unwrap()
}

#[path = "../../../tests/support/never_panic.rs"]
mod never_panic;
use never_panic::*;

/// Byte edits splicing in this file's [`SPLICES`].
fn byte_edits() -> impl Strategy<Value = Vec<ByteEdit>> {
    never_panic::byte_edits(SPLICES)
}

/// JSON edits putting this file's [`WEIRD_JSON`] in place of values.
fn json_edits() -> impl Strategy<Value = Vec<JsonEdit>> {
    never_panic::json_edits(WEIRD_JSON)
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

/// JSON texts that replace a value, or follow a duplicated key.
const WEIRD_JSON: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1",
    "2",
    "3",
    "7",
    "-0",
    "0.5",
    "-2.5",
    "1e308",
    "-1e308",
    "1e999",
    "4294967295",
    "4294967296",
    "1099511627776",
    "1000000000000000",
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
    "\"llama3\"",
    "\"default\"",
    "\"linear\"",
    "\"silu\"",
    "\"F32\"",
    "\"BF16\"",
    "\"F64\"",
    "\"I64\"",
    "\"BOOL\"",
    "\"F8_E4M3\"",
    "\"LORA\"",
    "\"CAUSAL_LM\"",
    "\"SEQ_CLS\"",
    "\"all-linear\"",
    "\"none\"",
    "\"model.safetensors\"",
    "\"model-00001-of-00004.safetensors\"",
    "\"../model-00002-of-00004.safetensors\"",
    "\"/\"",
    "[]",
    "{}",
    "[0]",
    "[1,2,3]",
    "[-1]",
    "[0,0]",
    "[4,0]",
    "[0,18446744073709551615]",
    "[18446744073709551615,18446744073709551615]",
    "[4294967296,4294967296,4294967296]",
    "[null]",
    "[\"a\"]",
    "[\"q_proj\",\"q\"]",
    "[\"score\"]",
    "{\"a\":null}",
    "{\"rope_type\":\"llama3\",\"factor\":0}",
    "{\"rope_type\":\"llama3\",\"factor\":-1,\"low_freq_factor\":4,\"high_freq_factor\":1,\"original_max_position_embeddings\":0}",
    "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}",
    "{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}",
];

// ------------------------------------------------------------------------------------------------
// Safetensors mutations: the header length, the JSON header, the data.
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum HeaderLen {
    /// Keep the length the (possibly edited) header has.
    Exact,
    /// The true length plus a small signed offset.
    Off(i64),
    /// A fixed value.
    Value(u64),
}

fn header_len() -> impl Strategy<Value = HeaderLen> {
    prop_oneof![
        4 => Just(HeaderLen::Exact),
        2 => (-9i64..9).prop_map(HeaderLen::Off),
        2 => select(vec![
            0u64,
            1,
            2,
            7,
            8,
            u64::from(u32::MAX),
            1 << 32,
            100_000_000,
            100_000_001,
            (i64::MAX as u64) - 7,
            i64::MAX as u64,
            u64::MAX - 8,
            u64::MAX,
        ])
        .prop_map(HeaderLen::Value),
        1 => any::<u64>().prop_map(HeaderLen::Value),
    ]
}

#[derive(Debug, Clone)]
enum DataEdit {
    Keep,
    Truncate(Index),
    Extend(usize),
}

fn data_edit() -> impl Strategy<Value = DataEdit> {
    prop_oneof![
        3 => Just(DataEdit::Keep),
        1 => any::<Index>().prop_map(DataEdit::Truncate),
        1 => (1usize..64).prop_map(DataEdit::Extend),
    ]
}

/// A safetensors file with its JSON header edited, its length field set, its data cut or
/// extended, then bytes edited anywhere.
#[derive(Debug, Clone)]
struct StMutation {
    json: Vec<JsonEdit>,
    len: HeaderLen,
    data: DataEdit,
    bytes: Vec<ByteEdit>,
}

fn st_mutation() -> impl Strategy<Value = StMutation> {
    (
        prop::collection::vec(json_edit(WEIRD_JSON), 0..3),
        header_len(),
        data_edit(),
        byte_edits(),
    )
        .prop_map(|(json, len, data, bytes)| StMutation {
            json,
            len,
            data,
            bytes,
        })
}

fn mutate_safetensors(file: &[u8], m: &StMutation) -> Vec<u8> {
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&file[8..8 + n]).unwrap();
    let mut data = file[8 + n..].to_vec();
    let header = if m.json.is_empty() {
        header.to_string()
    } else {
        mutate_json(header.trim_end(), &m.json)
    };
    match &m.data {
        DataEdit::Keep => {}
        DataEdit::Truncate(i) => data.truncate(i.index(data.len() + 1)),
        DataEdit::Extend(k) => data.extend(std::iter::repeat_n(0x7f, *k)),
    }
    let len = match m.len {
        HeaderLen::Exact => header.len() as u64,
        HeaderLen::Off(d) => (header.len() as i64 + d).max(0) as u64,
        HeaderLen::Value(v) => v,
    };
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    apply_bytes(out, &m.bytes)
}

const SAFETENSORS: &[&str] = &[
    "lora/inputs.safetensors",
    "lora/kiln-clm/adapter_model.safetensors",
    "lora/peft-cls/adapter_model.safetensors",
    "model/bf16-sharded/model-00004-of-00004.safetensors",
];

fn safetensors_fixture(i: &Index) -> &'static [u8] {
    static FILES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    i.get::<Vec<u8>>(FILES.get_or_init(|| SAFETENSORS.iter().map(|f| fixture_bytes(f)).collect()))
}

/// Opens a checkpoint and reads every tensor in every dtype and layout the loaders ask for.
fn read_every_tensor(reader: Result<CheckpointReader, kiln_model::Error>) {
    let Ok(mut reader) = reader else {
        return;
    };
    let _ = reader.index_path();
    for name in reader.names() {
        let _ = reader.stored_dtype(&name);
        let _ = reader.contains(&name);
        let Some(shape) = reader.shape(&name).map(<[usize]>::to_vec) else {
            continue;
        };
        let _ = reader.read_f32(&name, &shape);
        for (dtype, transposed) in [
            (DType::F32, false),
            (DType::F32, true),
            (DType::BF16, false),
            (DType::F16, true),
        ] {
            let _ = reader.read_as(&name, &shape, dtype, transposed);
        }
        // A shape that does not match is an error, not a panic.
        let _ = reader.read_f32(&name, &[shape.iter().product::<usize>().wrapping_add(1)]);
    }
    let _ = reader.read_f32("no such tensor", &[1]);
    let _ = reader.check_all_used(&[]);
}

// ------------------------------------------------------------------------------------------------
// config.json
// ------------------------------------------------------------------------------------------------

fn model_configs() -> &'static [String] {
    static CONFIGS: OnceLock<Vec<String>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let mut v: Vec<String> = ["tied", "untied-gqa", "reward", "bf16-sharded"]
            .iter()
            .map(|d| fixture_text(&format!("model/{d}/config.json")))
            .collect();
        v.push(fixture_text("sampling/tiny-chat/config.json"));
        v.push(LlamaConfig::llama3_2_1b().to_hf_json("bfloat16"));
        // transformers 5 layout: `rope_parameters`.
        v.push(
            r#"{"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "eos_token_id": 2,
                "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}"#
                .into(),
        );
        v
    })
}

/// Everything one does with a parsed config; only panics matter.
fn use_config(path: &Path) {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    let _ = LlamaConfig::from_json_str(&text, path);
    if let Ok(c) = LlamaConfig::from_file(path) {
        let _ = c.validate();
        let _ = c.num_parameters();
        let _ = c.num_key_value_groups();
        let json = c.to_hf_json("float32");
        assert_eq!(LlamaConfig::from_json_str(&json, path).unwrap(), c);
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn config_json_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        within(move || {
            let dir = Scratch::new();
            use_config(&dir.write("config.json", &bytes));
        });
    }

    #[test]
    fn config_json_survives_mutations(base in any::<Index>(), json in json_edits(), bytes in byte_edits()) {
        let text = base.get(model_configs()).clone();
        within(move || {
            let dir = Scratch::new();
            use_config(&dir.write("config.json", mutated(&text, &json, &bytes)));
        });
    }
}

/// The size fields of `config.json`.
const SIZE_KEYS: &[&str] = &[
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
];

/// A size: small, a power of two, near a power of two, or anything.
fn size_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..300,
        (0u32..64).prop_map(|k| 1u64 << k),
        (0u32..64, -2i64..3).prop_map(|(k, d)| (1u64 << k).wrapping_add_signed(d)),
        any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn config_sizes_survive_any_value(
        model in select(vec!["tied", "untied-gqa"]),
        sizes in prop::collection::vec((select(SIZE_KEYS), size_value()), 1..4),
    ) {
        within(move || {
            let mut v: Value =
                serde_json::from_str(&fixture_text(&format!("model/{model}/config.json"))).unwrap();
            for (key, value) in &sizes {
                v[*key] = serde_json::json!(value);
            }
            let dir = Scratch::new();
            use_config(&dir.write("config.json", v.to_string()));
            dir.link("model.safetensors", fixture(&format!("model/{model}/model.safetensors")));
            load_causal_lm(&dir.0);
        });
    }
}

// ------------------------------------------------------------------------------------------------
// adapter_config.json
// ------------------------------------------------------------------------------------------------

fn use_adapter_config(path: &Path) {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    let _ = AdapterConfig::from_json_str(&text, path);
    let _ = kiln_model::LoraConfig::from_adapter_config(path);
    if let Ok(c) = AdapterConfig::from_file(path) {
        let back = AdapterConfig::from_json_str(&c.to_json(), path).unwrap();
        assert_eq!(back, c);
    }
}

fn adapter_configs() -> &'static [String] {
    static CONFIGS: OnceLock<Vec<String>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        ["kiln-clm", "kiln-cls", "peft-clm", "peft-cls"]
            .iter()
            .map(|d| fixture_text(&format!("lora/{d}/adapter_config.json")))
            .collect()
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn adapter_config_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        within(move || {
            let dir = Scratch::new();
            use_adapter_config(&dir.write("adapter_config.json", &bytes));
        });
    }

    #[test]
    fn adapter_config_survives_mutations(base in any::<Index>(), json in json_edits(), bytes in byte_edits()) {
        let text = base.get(adapter_configs()).clone();
        within(move || {
            let dir = Scratch::new();
            use_adapter_config(&dir.write("adapter_config.json", mutated(&text, &json, &bytes)));
        });
    }
}

// ------------------------------------------------------------------------------------------------
// safetensors files and sharded checkpoints
// ------------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn safetensors_survive_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        len in header_len(),
    ) {
        within(move || {
            let dir = Scratch::new();
            // Raw bytes, and the same bytes behind a chosen header length.
            read_every_tensor(CheckpointReader::open_file(dir.write("raw.safetensors", &bytes)));
            let n = match len {
                HeaderLen::Exact => bytes.len() as u64,
                HeaderLen::Off(d) => (bytes.len() as i64 + d).max(0) as u64,
                HeaderLen::Value(v) => v,
            };
            let mut framed = n.to_le_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            dir.write("model.safetensors", &framed);
            read_every_tensor(CheckpointReader::open(&dir.0));
        });
    }

    #[test]
    fn safetensors_survive_mutations(base in any::<Index>(), m in st_mutation()) {
        let file = mutate_safetensors(safetensors_fixture(&base), &m);
        within(move || {
            let dir = Scratch::new();
            dir.write("model.safetensors", &file);
            read_every_tensor(CheckpointReader::open_file(dir.0.join("model.safetensors")));
            read_every_tensor(CheckpointReader::open(&dir.0));
        });
    }
}

const SHARDS: &[&str] = &[
    "model-00001-of-00004.safetensors",
    "model-00002-of-00004.safetensors",
    "model-00003-of-00004.safetensors",
    "model-00004-of-00004.safetensors",
];

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn sharded_checkpoints_survive_mutations(
        index_edit in prop::option::of((json_edits(), byte_edits())),
        shard in any::<Index>(),
        m in st_mutation(),
    ) {
        within(move || {
            let dir = Scratch::new();
            let index = fixture_text("model/bf16-sharded/model.safetensors.index.json");
            let index = match &index_edit {
                Some((json, bytes)) => mutated(&index, json, bytes),
                None => index.into_bytes(),
            };
            dir.write("model.safetensors.index.json", index);
            let broken = shard.index(SHARDS.len());
            for (i, name) in SHARDS.iter().enumerate() {
                let rel = format!("model/bf16-sharded/{name}");
                if i == broken && index_edit.is_none() {
                    dir.write(name, mutate_safetensors(&fixture_bytes(&rel), &m));
                } else {
                    dir.link(name, fixture(&rel));
                }
            }
            read_every_tensor(CheckpointReader::open(&dir.0));
        });
    }
}

// ------------------------------------------------------------------------------------------------
// Whole loads: a fixture directory with one file mutated.
// ------------------------------------------------------------------------------------------------

fn load_causal_lm(dir: &Path) {
    let device = Default::default();
    let _ = LlamaForCausalLM::<B>::from_pretrained(dir, &device);
}

fn load_reward_model(dir: &Path) {
    let device = Default::default();
    let _ = LlamaForSequenceClassification::<B>::from_pretrained(
        dir,
        &device,
        MissingScore::Init { std: 0.02 },
    );
    let _ = LlamaForSequenceClassification::<B>::from_pretrained(dir, &device, MissingScore::Error);
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn from_pretrained_survives_a_mutated_config(
        model in select(vec!["tied", "untied-gqa", "reward"]),
        json in json_edits(),
        bytes in byte_edits(),
    ) {
        within(move || {
            let dir = Scratch::new();
            let config = fixture_text(&format!("model/{model}/config.json"));
            dir.write("config.json", mutated(&config, &json, &bytes));
            dir.link("model.safetensors", fixture(&format!("model/{model}/model.safetensors")));
            if model == "reward" {
                load_reward_model(&dir.0);
            } else {
                load_causal_lm(&dir.0);
            }
        });
    }

    #[test]
    fn from_pretrained_survives_mutated_weights(
        model in select(vec!["tied", "reward"]),
        m in st_mutation(),
    ) {
        within(move || {
            let dir = Scratch::new();
            dir.link("config.json", fixture(&format!("model/{model}/config.json")));
            let weights = fixture_bytes(&format!("model/{model}/model.safetensors"));
            dir.write("model.safetensors", mutate_safetensors(&weights, &m));
            if model == "reward" {
                load_reward_model(&dir.0);
            } else {
                load_causal_lm(&dir.0);
            }
        });
    }
}

/// The base models the adapter fixtures were trained on, loaded once.
fn base_causal_lm() -> LlamaForCausalLM<B> {
    static MODEL: OnceLock<std::sync::Mutex<LlamaForCausalLM<B>>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let m =
                LlamaForCausalLM::from_pretrained(fixture("model/untied-gqa"), &Default::default());
            std::sync::Mutex::new(m.unwrap())
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

fn base_reward_model() -> LlamaForSequenceClassification<B> {
    static MODEL: OnceLock<std::sync::Mutex<LlamaForSequenceClassification<B>>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let m = LlamaForSequenceClassification::from_pretrained(
                fixture("model/reward"),
                &Default::default(),
                MissingScore::Error,
            );
            std::sync::Mutex::new(m.unwrap())
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn load_adapter_survives_mutated_adapters(
        adapter in select(vec!["kiln-clm", "peft-clm", "kiln-cls", "peft-cls"]),
        config_edit in prop::option::of((json_edits(), byte_edits())),
        m in st_mutation(),
    ) {
        let causal = adapter.ends_with("clm");
        let (lm, rm) = if causal {
            (Some(base_causal_lm()), None)
        } else {
            (None, Some(base_reward_model()))
        };
        within(move || {
            let dir = Scratch::new();
            let rel = format!("lora/{adapter}");
            match &config_edit {
                Some((json, bytes)) => {
                    let text = fixture_text(&format!("{rel}/adapter_config.json"));
                    dir.write("adapter_config.json", mutated(&text, json, bytes));
                    dir.link("adapter_model.safetensors", fixture(&format!("{rel}/adapter_model.safetensors")));
                }
                None => {
                    dir.link("adapter_config.json", fixture(&format!("{rel}/adapter_config.json")));
                    let weights = fixture_bytes(&format!("{rel}/adapter_model.safetensors"));
                    dir.write("adapter_model.safetensors", mutate_safetensors(&weights, &m));
                }
            }
            let device = Default::default();
            if let Some(lm) = lm {
                let _ = lm.load_adapter(&dir.0, &device);
            }
            if let Some(rm) = rm {
                let _ = rm.load_adapter(&dir.0, &device);
            }
        });
    }
}

// ------------------------------------------------------------------------------------------------
// Regressions: inputs the properties found.
// ------------------------------------------------------------------------------------------------

/// Sizes in `config.json` that pass the per-field checks but whose products overflow: in a debug
/// build `LlamaConfig::num_parameters` and `from_pretrained`'s layer shapes
/// (`num_attention_heads * head_dim`) panicked on the overflow, and a huge `num_hidden_layers`
/// reserved memory for that many layers before reading any (a "capacity overflow" panic, or an
/// aborting allocation failure). Found by `config_sizes_survive_any_value`.
#[test]
fn oversized_configs_are_errors() {
    for (key, value) in [
        ("num_hidden_layers", 1_000_000_000_000_000u64),
        ("num_hidden_layers", u64::MAX),
        ("num_attention_heads", 1 << 32),
        ("hidden_size", 1 << 62),
        ("intermediate_size", u64::MAX),
        ("vocab_size", u64::MAX),
    ] {
        let mut v: Value = serde_json::from_str(&fixture_text("model/tied/config.json")).unwrap();
        v[key] = serde_json::json!(value);
        if key == "num_attention_heads" {
            v["num_key_value_heads"] = serde_json::json!(value);
            v["head_dim"] = serde_json::json!(value);
        }
        let dir = Scratch::new();
        let path = dir.write("config.json", v.to_string());
        let err = LlamaConfig::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("more parameters"), "{key} = {value}: {err}");
        dir.link("model.safetensors", fixture("model/tied/model.safetensors"));
        let device = Default::default();
        assert!(LlamaForCausalLM::<B>::from_pretrained(&dir.0, &device).is_err());
    }
    // Large but countable: a config error is not expected, the checkpoint decides.
    let mut v: Value = serde_json::from_str(&fixture_text("model/tied/config.json")).unwrap();
    v["num_hidden_layers"] = serde_json::json!(10_000_000_000u64);
    let dir = Scratch::new();
    dir.write("config.json", v.to_string());
    dir.link("model.safetensors", fixture("model/tied/model.safetensors"));
    let err = LlamaForCausalLM::<B>::from_pretrained(&dir.0, &Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("model.layers.2."), "{err}");
    let c = LlamaConfig {
        vocab_size: usize::MAX,
        ..LlamaConfig::llama3_8b()
    };
    assert_eq!(c.num_parameters(), usize::MAX);
}
