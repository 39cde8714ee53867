//! Every kiln-model reader of outside files returns a value or an error, never panics or hangs,
//! on arbitrary bytes and on mutated valid files: `config.json` (`DecoderConfig`), PEFT's
//! `adapter_config.json` (`AdapterConfig`), safetensors files (`CheckpointReader`: the 8-byte
//! header length, the JSON header and the data mutated), sharded checkpoints
//! (`model.safetensors.index.json`), and whole loads (`from_pretrained`, `load_adapter`) of
//! fixture directories with one file mutated.
//!
//! Each case runs on its own thread under a time limit, so a hang fails the test.
#![cfg(test)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::backend::Flex;
use burn::tensor::DType;
use kiln_model::{
    AdapterConfig, CheckpointReader, DecoderConfig, LlamaForCausalLM,
    LlamaForSequenceClassification, MissingScore,
};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::Value;

type B = Flex;

// ------------------------------------------------------------------------------------------------
// Harness: fixtures, scratch directories, the time limit.
// ------------------------------------------------------------------------------------------------

fn fixture(rel: &str) -> PathBuf {
    kiln_test_support::fixture(rel)
}

fn fixture_bytes(rel: &str) -> Vec<u8> {
    std::fs::read(fixture(rel)).unwrap()
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

// ------------------------------------------------------------------------------------------------
// Mutation dictionaries (the engine is tests/support/never_panic.rs).
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

mod checkpoints;
mod configs;
mod regressions;
