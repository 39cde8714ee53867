//! The model and the losses on the facade's selected backend: the CPU (flex) by default, the GPU
//! with `--features cuda` (`scripts/gpu/check.sh` runs this file there), LibTorch with
//! `--features tch` (and no `cuda`), wgpu with `--features wgpu` (`scripts/gpu/wgpu_check.sh` runs
//! it on Mesa's lavapipe). Logits match the
//! transformers fixtures, the DPO-family and Bradley-Terry losses match their f64 references,
//! and a DPO step (loss and gradient norm) matches the CPU's.
#![cfg(test)]

use kiln::backend::{Autodiff, Checkpointed, Cpu, Selected};
use kiln::burn::tensor::backend::{AutodiffBackend, Backend};
use kiln::burn::tensor::{Int, Tensor, TensorData};
use kiln::data::Example;
use kiln::losses::testing::reference;
use kiln::losses::{BradleyTerryConfig, DpoConfig, DpoLoss};
use kiln::model::LlamaForCausalLM;
use kiln::model::prelude::*;
use kiln::train::dpo::{DpoTrainConfig, precompute_reference_logps, train_dpo};
use kiln::train::{TrainConfig, TrainLoop};
use std::path::PathBuf;

/// The backend under test: the facade's selection (cuda, then tch, then wgpu, then flex).
type TB = kiln::backend::Selected;

/// GPU kernels (TF32-free f32, but other reduction orders) get a looser bound than the CPU on
/// CUDA. wgpu keeps the CPU's bound: on Mesa's lavapipe the largest error is 2.3e-6 (f32 with
/// other reduction orders than transformers'), so 1e-4 leaves a 40x margin for a real GPU's
/// orders while still catching a wrong mask or a wrong kernel (errors of 1e-1 and more).
const TOL: f32 = if cfg!(feature = "cuda") { 1e-3 } else { 1e-4 };

fn fixture(name: &str) -> PathBuf {
    kiln_test_support::fixture("model").join(name)
}

fn expected(name: &str, key: &str) -> (Vec<usize>, Vec<f32>, Option<Vec<i64>>) {
    let bytes = std::fs::read(fixture(name).join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(key).unwrap();
    let shape = t.shape().to_vec();
    match t.dtype() {
        safetensors::Dtype::F32 => {
            let v = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (shape, v, None)
        }
        _ => {
            let v = t
                .data()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (shape, Vec::new(), Some(v))
        }
    }
}

#[test]
#[allow(clippy::print_stderr)] // the measured error, for `--nocapture` runs on other backends
fn logits_match_transformers_on_the_selected_backend() {
    let device = Default::default();
    for name in ["untied-gqa", "tied"] {
        let model = LlamaForCausalLM::<TB>::from_pretrained(fixture(name), &device).unwrap();
        for case in ["single", "left"] {
            let (shape, _, ids) = expected(name, &format!("{case}.input_ids"));
            let (_, _, mask) = expected(name, &format!("{case}.attention_mask"));
            let (mask, ids) = (mask.unwrap(), ids.unwrap());
            let t = |v: Vec<i64>| {
                Tensor::<TB, 2, Int>::from_data(TensorData::new(v, [shape[0], shape[1]]), &device)
            };
            let logits = model.forward(t(ids), Some(t(mask.clone()))).unwrap();
            let (lshape, want, _) = expected(name, &format!("{case}.logits"));
            let got: Vec<f32> = logits.into_data().convert::<f32>().to_vec().unwrap();
            let vocab = lshape[2];
            let err = got
                .iter()
                .zip(&want)
                .enumerate()
                .filter(|(i, _)| mask[i / vocab] == 1)
                .map(|(_, (a, b))| (a - b).abs())
                .fold(0f32, f32::max);
            eprintln!("{name}/{case}: max |logits err| {err:.2e} (bound {TOL:.0e})");
            assert!(err <= TOL, "{name}/{case}: max |logits err| {err}");
        }
    }
}

#[test]
fn losses_match_their_f64_references_on_the_selected_backend() {
    type AD = Autodiff<TB>;
    let device = Default::default();
    let t = |v: &[f32]| Tensor::<AD, 1>::from_floats(v, &device);
    let (pc, pr, rc, rr) = (
        [-10.0, -3.5, -7.25],
        [-11.0, -2.0, -7.0],
        [-10.5, -3.0, -8.0],
        [-10.5, -2.5, -6.5],
    );
    for loss in [
        DpoLoss::Sigmoid,
        DpoLoss::Cdpo {
            label_smoothing: 0.1,
        },
        DpoLoss::Robust {
            label_smoothing: 0.1,
        },
        DpoLoss::Ipo,
        DpoLoss::Hinge,
    ] {
        let dpo = DpoConfig::new()
            .with_beta(0.3)
            .with_loss(loss)
            .init()
            .unwrap();
        let out = dpo.forward(t(&pc), t(&pr), t(&rc), t(&rr));
        let got: Vec<f32> = out.losses.into_data().convert::<f32>().to_vec().unwrap();
        for i in 0..3 {
            let h = f64::from((pc[i] - rc[i]) - (pr[i] - rr[i]));
            let want = reference::dpo_pair_loss(loss, 0.3, h);
            assert!(
                (f64::from(got[i]) - want).abs() < 1e-5,
                "{loss:?}: {} vs {want}",
                got[i]
            );
        }
    }
    let bt = BradleyTerryConfig::new().init().unwrap();
    let out = bt.forward(t(&pc), t(&pr), None);
    let got: Vec<f32> = out.losses.into_data().convert::<f32>().to_vec().unwrap();
    for i in 0..3 {
        let want = -reference::log_sigmoid(f64::from(pc[i] - pr[i]));
        assert!((f64::from(got[i]) - want).abs() < 1e-5);
    }
}

fn step_on<B: Backend>() -> (f64, f64) {
    steps_on::<Autodiff<B>>()
}

/// Two DPO steps on the training backend `A`: the second step's loss and the first's gradient
/// norm.
fn steps_on<A: AutodiffBackend>() -> (f64, f64) {
    let device = Default::default();
    let policy = LlamaForCausalLM::<A>::from_pretrained(fixture("untied-gqa"), &device).unwrap();
    let row = |seed: u32| Example {
        ids: (0..24).map(|t| 3 + (seed * 31 + t * 7) % 200).collect(),
        loss_mask: (0..24).map(|t| t >= 12).collect(),
    };
    let pairs = vec![(row(1), row(2)), (row(3), row(4))];
    let dtc = DpoTrainConfig::new().with_pad_id(Some(0));
    let reference = {
        let r =
            LlamaForCausalLM::<A::InnerBackend>::from_pretrained(fixture("untied-gqa"), &device)
                .unwrap();
        precompute_reference_logps(&r, &pairs, 0, 2, dtc.reduction()).unwrap()
    };
    let mut train = TrainLoop::new(
        policy,
        TrainConfig::new(2).with_lr(1e-3).with_micro_batch_size(2),
    )
    .unwrap();
    let stats = train_dpo(&mut train, (&pairs, &reference), &dtc).unwrap();
    (stats[1].loss, stats[0].grad_norm)
}

#[test]
#[allow(clippy::print_stderr)] // the measured differences, for `--nocapture` runs
fn a_dpo_step_matches_the_cpu() {
    let (loss, norm) = step_on::<TB>();
    let (cpu_loss, cpu_norm) = step_on::<Cpu>();
    eprintln!(
        "DPO step: loss {loss:.7} vs CPU {cpu_loss:.7} (|diff| {:.1e}), grad norm {norm:.6} vs {cpu_norm:.6} (rel {:.1e})",
        (loss - cpu_loss).abs(),
        (norm - cpu_norm).abs() / cpu_norm.max(1.0)
    );
    assert!((loss - cpu_loss).abs() < 1e-4, "{loss} vs {cpu_loss}");
    assert!(
        (norm - cpu_norm).abs() < 1e-3 * cpu_norm.max(1.0),
        "{norm} vs {cpu_norm}"
    );
}

/// Activation checkpointing (`kiln::backend::Checkpointed`) recomputes instead of storing: the
/// same steps, to rounding.
#[test]
fn activation_checkpointing_trains_the_same_steps() {
    let (loss, norm) = steps_on::<Checkpointed<Selected>>();
    let (plain_loss, plain_norm) = step_on::<Selected>();
    assert!((loss - plain_loss).abs() < 1e-6, "{loss} vs {plain_loss}");
    assert!(
        (norm - plain_norm).abs() < 1e-6 * plain_norm.max(1.0),
        "{norm} vs {plain_norm}"
    );
}

fn tiny_chat() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sampling/tiny-chat")
}

/// Whether the logits of `model` on a short prompt hold a NaN or an infinity, and what greedy
/// generation answers.
fn nan_reaches_the_logits(model: &LlamaForCausalLM<TB>) -> (bool, Result<(), String>) {
    use kiln::sampling::{GenerationConfig, Generator, SamplerConfig};
    let device = Default::default();
    let ids = vec![1u32, 7, 9, 30, 2, 11];
    let input = Tensor::<TB, 2, Int>::from_data(
        TensorData::new(ids.iter().map(|&i| i as i64).collect(), [1, ids.len()]),
        &device,
    );
    let logits: Vec<f32> = model
        .forward(input, None)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap();
    let config = GenerationConfig::new()
        .with_sampler(SamplerConfig::new().with_temperature(0.0))
        .with_max_new_tokens(4);
    let generated = Generator::new(model, config)
        .unwrap()
        .generate(&[ids])
        .map(|_| ())
        .map_err(|e| e.to_string());
    (logits.iter().any(|v| !v.is_finite()), generated)
}

/// A NaN in any one projection of layer 0 (or in a LoRA `B` on `q_proj`) reaches the logits as
/// in PyTorch, and generation stops with `NonFiniteLogits`. burn-flex's fused attention sets a
/// row whose scores are all NaN to zero; `q_proj` and `k_proj` caught that (finite logits
/// before `kiln-model`'s `non_finite_queries`).
#[test]
fn a_nan_weight_reaches_the_logits_on_the_selected_backend() {
    use kiln::burn::module::Param;
    use kiln::model::{LoraConfig, LoraTarget};
    let device = Default::default();
    let clean = LlamaForCausalLM::<TB>::from_pretrained(tiny_chat(), &device).unwrap();
    let (bad, generated) = nan_reaches_the_logits(&clean);
    assert!(!bad && generated.is_ok(), "the clean model is finite");
    for target in LoraTarget::ALL {
        let mut model = clean.clone();
        let p = model.model.layers[0].projection_mut(target);
        p.base.weight = Param::from_tensor(p.base.weight.val().full_like(f32::NAN));
        let (bad, generated) = nan_reaches_the_logits(&model);
        assert!(bad, "{target}: NaN weights gave finite logits");
        let err = generated.expect_err("generation must stop");
        assert!(err.contains("non-finite"), "{target}: {err}");
    }
    for target in [LoraTarget::Q, LoraTarget::K] {
        let lora = LoraConfig::new(vec![target]);
        let mut model = clean.clone().with_lora(&lora, &device).unwrap();
        let adapter = model.model.layers[0]
            .projection_mut(target)
            .lora
            .as_mut()
            .unwrap();
        adapter.lora_b = Param::from_tensor(adapter.lora_b.val().full_like(f32::NAN));
        let (bad, generated) = nan_reaches_the_logits(&model);
        assert!(bad, "LoRA B on {target}: NaN gave finite logits");
        assert!(generated.is_err(), "LoRA B on {target}");
    }
}

/// Half precision on the selected backend: f16 and bf16 weights either give logits close to the
/// f32 model's (the bound is bf16's: 8 bits of mantissa over two layers), or loading is
/// `UnsupportedBackendDtype`, which names the dtype and the way out, never wrong numbers.
#[test]
#[allow(clippy::print_stderr)] // what the backend supports, for `--nocapture` runs
fn half_precision_is_close_to_f32_or_a_clear_error_on_the_selected_backend() {
    use kiln::model::{Error, LoadDtype, LoadOptions};
    let device = Default::default();
    let dir = fixture("untied-gqa");
    let (shape, _, ids) = expected("untied-gqa", "single.input_ids");
    let input = || {
        Tensor::<TB, 2, Int>::from_data(
            TensorData::new(ids.clone().unwrap(), [shape[0], shape[1]]),
            &device,
        )
    };
    let logits = |m: &LlamaForCausalLM<TB>| -> Vec<f32> {
        m.forward(input(), None)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap()
    };
    let want = logits(&LlamaForCausalLM::<TB>::from_pretrained(&dir, &device).unwrap());
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    for dtype in [LoadDtype::F16, LoadDtype::BF16] {
        match LlamaForCausalLM::<TB>::from_pretrained_with_options(
            &dir,
            &device,
            LoadOptions::dtype(dtype),
        ) {
            Ok(model) => {
                let got = logits(&model);
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                eprintln!("{dtype:?}: max |logits err| vs f32 {err:.2e} (logits up to {scale:.2})");
                assert!(got.iter().all(|v| v.is_finite()), "{dtype:?}: non-finite");
                assert!(
                    err <= 0.05 * scale.max(1.0),
                    "{dtype:?}: {err} (scale {scale})"
                );
            }
            Err(e @ Error::UnsupportedBackendDtype { .. }) => {
                eprintln!("{dtype:?}: not supported here: {e}");
            }
            Err(e) => panic!("{dtype:?}: {e}"),
        }
    }
}
