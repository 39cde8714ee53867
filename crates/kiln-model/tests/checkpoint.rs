//! Checkpoint I/O: save -> load round trips and the errors for broken checkpoints.
#![cfg(test)]
#![allow(clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor};
use common::*;
use kiln_model::prelude::*;
use kiln_model::{
    Error, LlamaForCausalLM, LlamaForSequenceClassification, MissingScore, SaveDtype, SaveOptions,
};

fn ids() -> Tensor<B, 2, Int> {
    Tensor::from_data([[5, 17, 99, 3, 42, 7, 120, 11]], &Default::default())
}

fn logits(m: &LlamaForCausalLM<B>) -> Vec<f32> {
    to_vec(m.forward(ids(), None).unwrap())
}

/// Where the saved models go; `scripts/check_saved_model.py` reloads them in transformers.
fn saved_dir(name: &str) -> PathBuf {
    tmp_dir(&format!("saved/{name}"))
}

#[test]
fn f32_round_trip_is_exact() {
    let device = Default::default();
    for name in ["untied-gqa", "tied"] {
        let m = LlamaForCausalLM::<B>::from_pretrained(fixture(name), &device).unwrap();
        let dir = saved_dir(name);
        let opts = SaveOptions {
            dtype: SaveDtype::F32,
            ..SaveOptions::default()
        };
        m.save_pretrained(&dir, opts).unwrap();
        assert!(dir.join("model.safetensors").exists());
        let back = LlamaForCausalLM::<B>::from_pretrained(&dir, &device).unwrap();
        assert_eq!(back.config(), m.config());
        assert_eq!(
            logits(&back),
            logits(&m),
            "{name}: round trip changed logits"
        );
        assert_eq!(
            to_vec(back.model.layers[1].self_attn.q_proj.base.weight.val()),
            to_vec(m.model.layers[1].self_attn.q_proj.base.weight.val())
        );
    }
}

#[test]
fn bf16_sharded_round_trip_is_exact() {
    let device = Default::default();
    let m = LlamaForCausalLM::<B>::from_pretrained(fixture("bf16-sharded"), &device).unwrap();
    let dir = saved_dir("bf16-sharded");
    let opts = SaveOptions {
        dtype: SaveDtype::BF16,
        max_shard_bytes: 50_000,
    };
    m.save_pretrained(&dir, opts).unwrap();
    let shards = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            n.to_string_lossy().ends_with(".safetensors")
        })
        .count();
    assert!(shards > 1, "expected several shards, got {shards}");
    assert!(dir.join("model.safetensors.index.json").exists());
    let back = LlamaForCausalLM::<B>::from_pretrained(&dir, &device).unwrap();
    // The fixture's weights are bf16 values, so bf16 storage is lossless.
    assert_eq!(logits(&back), logits(&m));
}

#[test]
fn f16_save_is_close() {
    let device = Default::default();
    let m = LlamaForCausalLM::<B>::from_pretrained(fixture("untied-gqa"), &device).unwrap();
    let dir = saved_dir("untied-f16");
    let opts = SaveOptions {
        dtype: SaveDtype::F16,
        ..SaveOptions::default()
    };
    m.save_pretrained(&dir, opts).unwrap();
    let back = LlamaForCausalLM::<B>::from_pretrained(&dir, &device).unwrap();
    let err = max_err_where(&logits(&back), &logits(&m), 1, |_| true);
    assert!(err > 0.0 && err < 2e-2, "f16 error {err}");
}

#[test]
fn reward_round_trip_and_init_from_lm() {
    let device = Default::default();
    let m = LlamaForSequenceClassification::<B>::from_pretrained(
        fixture("reward"),
        &device,
        MissingScore::Error,
    )
    .unwrap();
    let dir = saved_dir("reward");
    let opts = SaveOptions {
        dtype: SaveDtype::F32,
        ..SaveOptions::default()
    };
    m.save_pretrained(&dir, opts).unwrap();
    let back =
        LlamaForSequenceClassification::<B>::from_pretrained(&dir, &device, MissingScore::Error)
            .unwrap();
    let x: Tensor<B, 2, Int> = Tensor::from_data([[5, 17, 99, 3], [4, 8, 0, 0]], &device);
    assert_eq!(
        to_vec(back.forward(x.clone(), None).unwrap()),
        to_vec(m.forward(x, None).unwrap())
    );

    // A causal-LM checkpoint has no score head: an error unless asked to initialise one.
    let err = LlamaForSequenceClassification::<B>::from_pretrained(
        fixture("untied-gqa"),
        &device,
        MissingScore::Error,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { tensor, .. } if tensor == "score.weight"),
        "{err}"
    );
    let rm = LlamaForSequenceClassification::<B>::from_pretrained(
        fixture("untied-gqa"),
        &device,
        MissingScore::Init { std: 0.02 },
    )
    .unwrap();
    assert_eq!(rm.score.weight.val().dims(), [64, 1]);
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
}

fn load_err(dir: &Path) -> Error {
    let err = LlamaForCausalLM::<B>::from_pretrained(dir, &Default::default()).unwrap_err();
    eprintln!("{err}");
    err
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_fixture("untied-gqa", "err-missing");
    edit_config(&dir, |v| v["num_hidden_layers"] = 3.into());
    let err = load_err(&dir);
    assert!(
        matches!(&err, Error::MissingTensor { tensor, file } if tensor == "model.layers.2.self_attn.q_proj.weight" && file.ends_with("model.safetensors")),
        "{err}"
    );
}

#[test]
fn unexpected_tensor_is_named() {
    let dir = copy_fixture("untied-gqa", "err-unexpected");
    edit_config(&dir, |v| v["num_hidden_layers"] = 1.into());
    let err = load_err(&dir);
    assert!(
        matches!(&err, Error::UnexpectedTensor { tensor, .. } if tensor.starts_with("model.layers.1.")),
        "{err}"
    );
}

#[test]
fn shape_mismatch_names_both_shapes() {
    let dir = copy_fixture("untied-gqa", "err-shape");
    edit_config(&dir, |v| v["intermediate_size"] = 96.into());
    let err = load_err(&dir);
    match &err {
        Error::ShapeMismatch {
            tensor,
            expected,
            found,
            file,
        } => {
            assert_eq!(tensor, "model.layers.0.mlp.gate_proj.weight");
            assert_eq!(expected, &vec![96, 64]);
            assert_eq!(found, &vec![128, 64]);
            assert!(file.ends_with("model.safetensors"));
        }
        _ => panic!("wrong error {err}"),
    }
    assert!(err.to_string().contains("[128, 64]") && err.to_string().contains("[96, 64]"));
}

#[test]
fn truncated_file_is_reported() {
    let dir = copy_fixture("untied-gqa", "err-truncated");
    let p = dir.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let err = load_err(&dir);
    assert!(
        matches!(&err, Error::Corrupt { file, .. } if file == &p),
        "{err}"
    );
}

#[test]
fn unsupported_dtype_is_named() {
    let dir = copy_fixture("untied-gqa", "err-dtype");
    let data = vec![0u8; 256 * 64 * 8];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![256, 64], &data)
        .unwrap();
    let p = dir.join("model.safetensors");
    safetensors::serialize_to_file([("model.embed_tokens.weight", view)], None, &p).unwrap();
    let err = load_err(&dir);
    assert!(
        matches!(&err, Error::UnsupportedDtype { tensor, dtype, .. } if tensor == "model.embed_tokens.weight" && dtype == "I64"),
        "{err}"
    );
}

#[test]
fn bad_config_names_the_key() {
    let dir = copy_fixture("untied-gqa", "err-config");
    edit_config(&dir, |v| {
        v.as_object_mut().unwrap().remove("hidden_size");
    });
    let err = load_err(&dir);
    assert!(
        matches!(&err, Error::Config { message, .. } if message.contains("hidden_size")),
        "{err}"
    );
    let missing = load_err(&dir.join("nope"));
    assert!(matches!(missing, Error::Io { .. }));
}

/// A NaN or an infinity in a checkpoint or an adapter is an error naming the tensor (checked while
/// decoding, in every stored dtype); `LoadOptions::allowing_non_finite` loads it anyway, and the
/// forward pass then propagates it to the logits.
#[test]
fn non_finite_weights_are_named_unless_allowed() {
    use kiln_model::{LoadOptions, LoraConfig, LoraTarget};
    let device = Default::default();
    let clean = LlamaForCausalLM::<B>::from_pretrained(fixture("untied-gqa"), &device).unwrap();
    for (dtype, value) in [
        (SaveDtype::F32, f32::NAN),
        (SaveDtype::BF16, f32::INFINITY),
        (SaveDtype::F16, f32::NEG_INFINITY),
    ] {
        let mut m = clean.clone();
        let p = &mut m.model.layers[0].self_attn.q_proj.base;
        p.weight = burn::module::Param::from_tensor(p.weight.val().full_like(value));
        let dir = saved_dir(&format!("non-finite-{dtype:?}"));
        m.save_pretrained(
            &dir,
            SaveOptions {
                dtype,
                ..SaveOptions::default()
            },
        )
        .unwrap();
        let err = load_err(&dir);
        assert!(
            matches!(&err, Error::NonFiniteWeight { tensor, index: 0, .. } if tensor == "model.layers.0.self_attn.q_proj.weight"),
            "{dtype:?}: {err}"
        );
        assert!(
            err.to_string().contains(kiln_model::ALLOW_NON_FINITE_ENV),
            "{err}"
        );
        let opts = LoadOptions::default().allowing_non_finite();
        let loaded =
            LlamaForCausalLM::<B>::from_pretrained_with_options(&dir, &device, opts).unwrap();
        assert!(logits(&loaded).iter().all(|v| !v.is_finite()), "{dtype:?}");
    }
    // A PEFT adapter with a NaN `lora_B`.
    let mut lm = clean
        .clone()
        .with_lora(&LoraConfig::new(vec![LoraTarget::Q]), &device)
        .unwrap();
    let a = lm.model.layers[0].self_attn.q_proj.lora.as_mut().unwrap();
    a.lora_b = burn::module::Param::from_tensor(a.lora_b.val().full_like(f32::NAN));
    let dir = saved_dir("non-finite-adapter");
    lm.save_adapter(&dir).unwrap();
    let err = clean.clone().load_adapter(&dir, &device).unwrap_err();
    assert!(
        matches!(&err, Error::NonFiniteWeight { tensor, file, .. } if tensor.contains("layers.0.self_attn.q_proj.lora_B") && file.ends_with("adapter_model.safetensors")),
        "{err}"
    );
}
