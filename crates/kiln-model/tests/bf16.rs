//! bf16 weights: a bf16 checkpoint loads without widening, the forward runs in bf16 and stays
//! within bf16 rounding of transformers' own bf16 forward (`expected_bf16.safetensors`, made by
//! `scripts/make_bf16_fixtures.py`), log-probs and scores are f32, LoRA trains f32 adapters on a
//! frozen bf16 base, and a backend without bf16 says so.
#![cfg(test)]
#![allow(clippy::print_stderr)]

mod common;

use std::collections::HashMap;

use burn::backend::{Autodiff, NdArray};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, FloatDType, Int, Tensor};
use common::*;
use kiln_model::prelude::*;
use kiln_model::{
    DecoderConfig, Error, LlamaForCausalLM, LoadDtype, LoadOptions, LogProbReduction,
    LogProbStrategy, LoraConfig, LoraTarget, SaveDtype, SaveOptions,
};
use safetensors::{Dtype, SafeTensors};

type A = Autodiff<B>;

const CASES: [&str; 4] = ["single", "left", "right", "long"];

fn hf_bf16() -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(fixture("bf16-sharded").join("expected_bf16.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            assert_eq!(v.dtype(), Dtype::F32);
            let vals = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (k, (v.shape().to_vec(), vals))
        })
        .collect()
}

fn bf16_model() -> LlamaForCausalLM<B> {
    LlamaForCausalLM::<B>::from_pretrained_with_options(
        fixture("bf16-sharded"),
        &Default::default(),
        LoadOptions::dtype(LoadDtype::BF16),
    )
    .unwrap()
}

/// Largest `|a - b|` over real tokens, and over real-token log-probs.
fn errors(
    logits: &[f32],
    want_logits: &[f32],
    lp: &[f32],
    want_lp: &[f32],
    m: &[i64],
    t: usize,
    vocab: usize,
) -> (f32, f32) {
    let e_logits = max_err_where(logits, want_logits, vocab, |p| m[p] == 1);
    let e_lp = max_err_where(lp, want_lp, 1, |i| {
        let (b, s) = (i / (t - 1), i % (t - 1));
        m[b * t + s] == 1 && m[b * t + s + 1] == 1
    });
    (e_logits, e_lp)
}

#[test]
fn bf16_checkpoint_loads_unwidened_and_matches_transformers_bf16() {
    let device = Default::default();
    let model = bf16_model();
    assert_eq!(model.dtype(), DType::BF16);
    let lm_head = model.lm_head.as_ref().unwrap().weight.val();
    assert_eq!(lm_head.dtype(), DType::BF16);
    let same = LlamaForCausalLM::<B>::from_pretrained_with_options(
        fixture("bf16-sharded"),
        &device,
        LoadOptions::dtype(LoadDtype::Checkpoint),
    )
    .unwrap();
    assert_eq!(same.dtype(), DType::BF16);
    // The default (f32) load widens exactly: the same values.
    let f32_model =
        LlamaForCausalLM::<B>::from_pretrained(fixture("bf16-sharded"), &device).unwrap();
    assert_eq!(f32_model.dtype(), DType::F32);
    assert_eq!(
        to_vec(lm_head),
        to_vec(f32_model.lm_head.as_ref().unwrap().weight.val())
    );

    let exp = Expected::load("bf16-sharded");
    let hf = hf_bf16();
    let mut worst = HashMap::new();
    for case in CASES {
        let ids = exp.ints(&format!("{case}.input_ids"));
        let mask = exp.ints(&format!("{case}.attention_mask"));
        let (mshape, m) = exp.mask_vec(case);
        let t = mshape[1];
        let logits = model.forward(ids.clone(), Some(mask.clone())).unwrap();
        assert_eq!(logits.dtype(), DType::BF16);
        let vocab = logits.dims()[2];
        let got = to_vec(logits);
        let lp = model
            .next_token_logprobs(ids.clone(), Some(mask.clone()))
            .unwrap();
        assert_eq!(lp.dtype(), DType::F32, "log-probs are upcast");
        let got_lp = to_vec(lp);
        // Against transformers in bf16 (eager and sdpa attention) and against f32.
        let f32_logits = to_vec(f32_model.forward(ids.clone(), Some(mask.clone())).unwrap());
        let f32_lp = to_vec(
            f32_model
                .next_token_logprobs(ids.clone(), Some(mask.clone()))
                .unwrap(),
        );
        let refs: [(&str, &[f32], &[f32]); 3] = [
            (
                "hf-bf16-eager",
                &hf[&format!("{case}.eager.logits")].1,
                &hf[&format!("{case}.eager.logprobs")].1,
            ),
            (
                "hf-bf16-sdpa",
                &hf[&format!("{case}.sdpa.logits")].1,
                &hf[&format!("{case}.sdpa.logprobs")].1,
            ),
            ("kiln-f32", &f32_logits, &f32_lp),
        ];
        for (name, want, want_lp) in refs {
            let (e, e_lp) = errors(&got, want, &got_lp, want_lp, &m, t, vocab);
            eprintln!(
                "bf16 vs {name} {case}: max |logits err| {e:.3e}, max |logprob err| {e_lp:.3e}"
            );
            let w = worst.entry(name).or_insert((0f32, 0f32));
            *w = (w.0.max(e), w.1.max(e_lp));
        }
        // HF bf16 against HF f32 (the fixture's f32 expectation) for scale.
        let (_, hf32) = exp.floats(&format!("{case}.logits"));
        let e = max_err_where(&hf[&format!("{case}.eager.logits")].1, hf32, vocab, |p| {
            m[p] == 1
        });
        eprintln!("hf-bf16-eager vs hf-f32 {case}: max |logits err| {e:.3e}");
    }
    // Logits here are O(1-3): one bf16 ulp is 0.0078-0.0156. Kiln and transformers round the same
    // bf16 ops in the same places except attention (flex computes it in f32 internally like
    // sdpa, eager rounds the scores to bf16), so they stay within a few ulps.
    for (name, (e, e_lp)) in &worst {
        assert!(*e < 0.1 && *e_lp < 0.1, "{name}: {e} / {e_lp}");
    }
}

#[test]
fn bf16_generation_scoring_and_sequence_logprobs() {
    let device = Default::default();
    let model = bf16_model();
    let ids =
        Tensor::<B, 2, Int>::from_data([[0, 0, 11, 12, 13, 14], [21, 22, 23, 24, 25, 26]], &device);
    let mask = Tensor::<B, 2, Int>::from_data([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]], &device);
    let full = to_vec(
        model
            .forward(ids.clone(), Some(mask.clone()))
            .unwrap()
            .narrow(1, 5, 1),
    );
    // Incremental decoding in bf16 (KV cache in bf16): prefill 5, then one step.
    let mut cache = model.new_cache();
    let _ = model.forward_cached(
        ids.clone().narrow(1, 0, 5),
        Some(mask.clone().narrow(1, 0, 5)),
        &mut cache,
    );
    assert_eq!(cache.layer(0).unwrap().key.dtype(), DType::BF16);
    let step = model
        .forward_cached(ids.clone().narrow(1, 5, 1), Some(mask.clone()), &mut cache)
        .unwrap();
    let e = full
        .iter()
        .zip(to_vec(step))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(e < 0.05, "cached step differs from the full forward by {e}");

    let target = Tensor::<B, 2>::from_data([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]; 2], &device);
    let chunked = model
        .sequence_logprobs(
            ids.clone(),
            Some(mask.clone()),
            target.clone(),
            LogProbReduction::Sum,
        )
        .unwrap();
    assert_eq!(chunked.dtype(), DType::F32);
    let full = model
        .sequence_logprobs_using(
            ids,
            Some(mask),
            target,
            LogProbReduction::Sum,
            LogProbStrategy::Full,
        )
        .unwrap();
    for (a, b) in to_vec(chunked).iter().zip(to_vec(full)) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
    }
}

/// `(dtype, values)` of every gradient, in visiting order.
type GradsByDtype = Vec<(DType, Vec<f32>)>;

struct Grads<'a> {
    grads: &'a <A as AutodiffBackend>::Gradients,
    with_grad: GradsByDtype,
    frozen_dtypes: Vec<DType>,
}

impl ModuleVisitor<A> for Grads<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<A, D>>) {
        match p.val().grad(self.grads) {
            Some(g) => {
                let dtype = g.dtype();
                self.with_grad.push((dtype, to_vec(g)));
            }
            None => self.frozen_dtypes.push(p.val().dtype()),
        }
    }
}

fn lora_grads(
    model: &LlamaForCausalLM<A>,
    strategy: LogProbStrategy,
) -> (f32, GradsByDtype, Vec<DType>) {
    let device = Default::default();
    let ids = Tensor::<A, 2, Int>::from_data(
        [
            [0, 0, 11, 12, 13, 14, 15, 16],
            [21, 22, 23, 24, 25, 26, 27, 28],
        ],
        &device,
    );
    let mask = Tensor::<A, 2, Int>::from_data([[0, 0, 1, 1, 1, 1, 1, 1], [1; 8]], &device);
    let target = Tensor::<A, 2>::from_data([[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]; 2], &device);
    let (loss, ()) = model
        .sequence_logprob_loss(
            ids,
            Some(mask),
            target,
            LogProbReduction::Sum,
            strategy,
            |lp| {
                assert_eq!(lp.dtype(), DType::F32);
                (lp.sum().neg(), ())
            },
        )
        .unwrap();
    let grads = loss.backward();
    let mut v = Grads {
        grads: &grads,
        with_grad: Vec::new(),
        frozen_dtypes: Vec::new(),
    };
    model.visit(&mut v);
    (loss.into_scalar(), v.with_grad, v.frozen_dtypes)
}

/// Non-zero LoRA `B` matrices so every adapter gets a gradient through both factors.
struct NudgeB;

impl burn::module::ModuleMapper<A> for NudgeB {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<A, D>>) -> Param<Tensor<A, D>> {
        param.map(|t| {
            let dims = t.dims();
            let is_b = D == 2
                && dims[0] == 4
                && t.dtype() == DType::F32
                && t.clone().abs().max().into_scalar() == 0.0;
            if !is_b {
                return t;
            }
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|i| ((i * 37) % 11) as f32 / 50.0 - 0.1)
                .collect();
            Tensor::<A, D>::from_data(burn::tensor::TensorData::new(v, dims), &t.device())
                .require_grad()
        })
    }
}

#[test]
fn lora_on_a_frozen_bf16_base_trains_f32_adapters() {
    let device = Default::default();
    let lc = LoraConfig::new(vec![
        LoraTarget::Q,
        LoraTarget::V,
        LoraTarget::Down,
        LoraTarget::Up,
    ])
    .with_rank(4)
    .with_alpha(8.0);
    let base = LlamaForCausalLM::<A>::from_pretrained_with_options(
        fixture("bf16-sharded"),
        &device,
        LoadOptions::dtype(LoadDtype::BF16),
    )
    .unwrap();
    let policy = base.with_lora(&lc, &device).unwrap().map(&mut NudgeB);
    // The same adapters on the f32 copy of the base.
    let policy32 = LlamaForCausalLM::<A>::from_pretrained(fixture("bf16-sharded"), &device)
        .unwrap()
        .with_lora(&lc, &device)
        .unwrap();
    let policy32 = copy_adapters(&policy, policy32);
    let n_adapters = 2 * lc.targets.len() * policy.config().num_hidden_layers;
    for strategy in [LogProbStrategy::Full, LogProbStrategy::default()] {
        let (l16, g16, frozen16) = lora_grads(&policy, strategy);
        let (l32, g32, _) = lora_grads(&policy32, strategy);
        assert_eq!(g16.len(), n_adapters, "gradients only for the adapters");
        assert!(
            g16.iter()
                .all(|(d, g)| *d == DType::F32 && g.iter().all(|x| x.is_finite()))
        );
        assert!(
            frozen16.iter().all(|d| *d == DType::BF16),
            "the base stays bf16: {frozen16:?}"
        );
        // bf16 activations: the loss and gradients follow the f32 ones to bf16 accuracy.
        let rel = (l16 - l32).abs() / l32.abs();
        let (mut num, mut den) = (0f64, 0f64);
        for ((_, a), (_, b)) in g16.iter().zip(&g32) {
            for (x, y) in a.iter().zip(b) {
                num += ((x - y) as f64).powi(2);
                den += (*y as f64).powi(2);
            }
        }
        let grad_rel = (num / den).sqrt();
        eprintln!(
            "{strategy:?}: bf16-base LoRA loss {l16} vs f32-base {l32} (rel {rel:.2e}); adapter gradient rel. L2 error {grad_rel:.2e}"
        );
        assert!(rel < 0.02 && grad_rel < 0.05, "{rel} {grad_rel}");
    }
    // Merging folds the f32 update into the bf16 weights (one rounding) and keeps bf16.
    let merged = policy.valid().merge_adapters();
    assert_eq!(merged.dtype(), DType::BF16);
    assert!(!merged.has_adapters());
}

/// `dst` with the adapter values of `src` (same targets, same order).
fn copy_adapters(src: &LlamaForCausalLM<A>, mut dst: LlamaForCausalLM<A>) -> LlamaForCausalLM<A> {
    for (ls, ld) in src.model.layers.iter().zip(dst.model.layers.iter_mut()) {
        for t in LoraTarget::ALL {
            if let (Some(a), Some(b)) = (&ls.projection(t).lora, &mut ld.projection_mut(t).lora) {
                b.lora_a = Param::from_tensor(a.lora_a.val().detach().require_grad());
                b.lora_b = Param::from_tensor(a.lora_b.val().detach().require_grad());
            }
        }
    }
    dst
}

#[test]
fn into_dtype_save_and_reload() {
    let device = Default::default();
    let cfg = DecoderConfig::tiny(64, 32);
    let model = LlamaForCausalLM::<B>::init_seeded(&cfg, 0.1, 1, &device);
    let bf = model.clone().into_dtype(FloatDType::BF16).unwrap();
    assert_eq!(bf.dtype(), DType::BF16);
    let ids = Tensor::<B, 2, Int>::from_data([[1, 2, 3, 4, 5]], &device);
    let a = to_vec(model.forward(ids.clone(), None).unwrap());
    let b = to_vec(bf.forward(ids.clone(), None).unwrap());
    let e = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(e < 0.2 && e > 0.0, "bf16 vs f32 logits {e}");
    let dir = tmp_dir("bf16-save");
    bf.save_pretrained(
        &dir,
        SaveOptions {
            dtype: SaveDtype::BF16,
            ..Default::default()
        },
    )
    .unwrap();
    let back = LlamaForCausalLM::<B>::from_pretrained_with_options(
        &dir,
        &device,
        LoadOptions::dtype(LoadDtype::Checkpoint),
    )
    .unwrap();
    assert_eq!(back.dtype(), DType::BF16);
    assert_eq!(
        to_vec(back.forward(ids, None).unwrap()),
        b,
        "bf16 save/load is bit-exact"
    );
}

#[test]
fn a_backend_without_bf16_is_a_clear_error() {
    let device = Default::default();
    let err = LlamaForCausalLM::<NdArray>::from_pretrained_with_options(
        fixture("bf16-sharded"),
        &device,
        LoadOptions::dtype(LoadDtype::BF16),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedBackendDtype { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("BF16") && msg.contains("LoadDtype::F32"),
        "{msg}"
    );
    let err = LlamaForCausalLM::<NdArray>::from_pretrained_with_options(
        fixture("bf16-sharded"),
        &device,
        LoadOptions::dtype(LoadDtype::Checkpoint),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedBackendDtype { .. }),
        "{err}"
    );
    let m = LlamaForCausalLM::<NdArray>::init_seeded(&DecoderConfig::tiny(64, 32), 0.1, 2, &device);
    assert!(matches!(
        m.into_dtype(FloatDType::BF16),
        Err(Error::UnsupportedBackendDtype { .. })
    ));
    // f32 works on it as before.
    assert!(LlamaForCausalLM::<NdArray>::from_pretrained(fixture("bf16-sharded"), &device).is_ok());
}
