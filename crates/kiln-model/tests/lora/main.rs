//! LoRA: step 0 equals the base, gradients only for adapters, PEFT-format round trips, parity with
//! `peft` on committed fixtures (made by `scripts/make_lora_fixtures.py`), merging, and errors.
#![cfg(test)]
#![allow(clippy::print_stderr)]

#[path = "../common/mod.rs"]
mod common;
mod freezing;
mod from_kiln;
mod from_peft;
mod round_trips_and_errors;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use common::{B, fixture, max_err_where, tmp_dir, to_vec};
use kiln_model::lora::{LoraAdapter, lora_key};
use kiln_model::{
    DecoderConfig, Error, LlamaForCausalLM, LlamaForSequenceClassification, LoraConfig, LoraTarget,
    MissingScore, SaveDtype, SaveOptions,
};
use safetensors::{Dtype, SafeTensors};

type A = Autodiff<Flex>;

const TOL: f32 = 1e-5;

fn lora_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/lora")
        .join(name)
}

/// Where merged checkpoints go; `scripts/make_lora_fixtures.py check` reloads them in
/// transformers.
fn merged_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("kiln-model/lora-merged")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn read_tensors(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            let vals = match v.dtype() {
                Dtype::F32 => v
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                Dtype::I64 => v
                    .data()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                d => panic!("unexpected dtype {d:?}"),
            };
            (k, (v.shape().to_vec(), vals))
        })
        .collect()
}

struct Inputs {
    ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2, Int>,
    mask_vec: Vec<i64>,
}

fn inputs() -> Inputs {
    let t = read_tensors(&lora_fixture("inputs.safetensors"));
    let int = |k: &str| {
        let (shape, v) = &t[k];
        let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
        (shape.clone(), v)
    };
    let (shape, ids) = int("input_ids");
    let (_, mask) = int("attention_mask");
    let device = Default::default();
    Inputs {
        ids: Tensor::from_data(TensorData::new(ids, shape.clone()), &device),
        mask: Tensor::from_data(TensorData::new(mask.clone(), shape), &device),
        mask_vec: mask,
    }
}

fn expected(path: &Path, key: &str) -> Vec<f32> {
    read_tensors(path)[key]
        .1
        .iter()
        .map(|&x| x as f32)
        .collect()
}

fn logits_err(got: &[f32], want: &[f32], inp: &Inputs, vocab: usize) -> f32 {
    max_err_where(got, want, vocab, |p| inp.mask_vec[p] == 1)
}

fn base_lm() -> LlamaForCausalLM<B> {
    LlamaForCausalLM::from_pretrained(fixture("untied-gqa"), &Default::default()).unwrap()
}

fn base_rm() -> LlamaForSequenceClassification<B> {
    LlamaForSequenceClassification::from_pretrained(
        fixture("reward"),
        &Default::default(),
        MissingScore::Error,
    )
    .unwrap()
}

struct Ids(Vec<(ParamId, usize)>);

impl<Bk: Backend> ModuleVisitor<Bk> for Ids {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Bk, D>>) {
        self.0.push((p.id, p.shape().num_elements()));
    }
}

fn param_ids<Bk: Backend, M: Module<Bk>>(m: &M) -> Vec<(ParamId, usize)> {
    let mut v = Ids(Vec::new());
    m.visit(&mut v);
    v.0
}

fn adapters<Bk: Backend>(m: &kiln_model::LlamaModel<Bk>) -> Vec<&LoraAdapter<Bk>> {
    m.layers
        .iter()
        .flat_map(|l| LoraTarget::ALL.map(|t| l.projection(t)))
        .filter_map(|p| p.lora.as_ref())
        .collect()
}

/// Replaces every adapter's `B` (zero after init) by non-zero values so gradients reach `A` too.
fn perturb_b<Bk: Backend>(m: &mut kiln_model::LlamaModel<Bk>, seed: u64) {
    let mut s = seed;
    for layer in &mut m.layers {
        for t in LoraTarget::ALL {
            if let Some(lora) = layer.projection_mut(t).lora.as_mut() {
                let [r, out] = lora.lora_b.dims();
                let device = lora.lora_b.device();
                let b = Tensor::from_data(
                    TensorData::new(det_values(&mut s, r * out, 0.1), [r, out]),
                    &device,
                );
                lora.lora_b = Param::initialized(lora.lora_b.id, b.require_grad());
            }
        }
    }
}

/// Deterministic pseudo-random values in `[-amp, amp]` from an integer hash (no libm, so they
/// are the same on every platform).
fn det_values(state: &mut u64, n: usize, amp: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((*state >> 33) % 2001) as f32; // 0..=2000
            (u - 1000.0) / 1000.0 * amp
        })
        .collect()
}
