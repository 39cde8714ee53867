//! Chunked log-probs on real model graphs: the same values as the full logits, and the same
//! gradient for every parameter (tied and untied heads, full fine-tuning and LoRA).
#![cfg(test)]

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor};
use kiln_model::prelude::*;
use kiln_model::{
    DecoderConfig, LlamaForCausalLM, LogProbReduction, LogProbStrategy, LoraConfig, LoraTarget,
};

type A = Autodiff<Flex>;

fn batch() -> (Tensor<A, 2, Int>, Tensor<A, 2, Int>, Tensor<A, 2>) {
    let device = Default::default();
    let ids = Tensor::<A, 2, Int>::from_data(
        [
            [0, 0, 11, 12, 13, 14, 15, 16],
            [21, 22, 23, 24, 25, 26, 27, 28],
            [0, 31, 32, 33, 34, 35, 36, 37],
            [41, 42, 43, 44, 45, 46, 0, 0],
        ],
        &device,
    );
    let attn = Tensor::<A, 2, Int>::from_data(
        [
            [0, 0, 1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1, 1, 1],
            [0, 1, 1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1, 0, 0],
        ],
        &device,
    );
    let target = Tensor::<A, 2>::from_data(
        [
            [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0],
            [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0],
        ],
        &device,
    );
    (ids, attn, target)
}

/// A DPO-style loss on two pairs (rows 0/1 chosen, 2/3 rejected).
fn dpo_like(lp: Tensor<A, 1>) -> Tensor<A, 1> {
    let margin = lp.clone().narrow(0, 0, 2) - lp.narrow(0, 2, 2);
    burn::tensor::activation::log_sigmoid(margin.mul_scalar(0.3))
        .neg()
        .mean()
}

/// `(elements, gradient)` of every float parameter, in visiting order.
type ParamGrads = Vec<(usize, Option<Vec<f32>>)>;

struct Collect<'a> {
    grads: &'a <A as AutodiffBackend>::Gradients,
    out: ParamGrads,
}

impl ModuleVisitor<A> for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
        let g = param
            .val()
            .grad(self.grads)
            .map(|g| g.into_data().to_vec::<f32>().unwrap());
        self.out.push((param.num_params(), g));
    }
}

fn run(
    model: &LlamaForCausalLM<A>,
    strategy: LogProbStrategy,
    reduction: LogProbReduction,
) -> (f32, ParamGrads) {
    let (ids, attn, target) = batch();
    let (loss, ()) = model
        .sequence_logprob_loss(ids, Some(attn), target, reduction, strategy, |lp| {
            (dpo_like(lp), ())
        })
        .unwrap();
    let grads = loss.backward();
    let mut c = Collect {
        grads: &grads,
        out: Vec::new(),
    };
    model.visit(&mut c);
    (loss.into_scalar(), c.out)
}

#[test]
fn chunked_training_gradients_equal_the_full_logits_path() {
    let device = Default::default();
    let chunked = LogProbStrategy::chunks_of(5).unwrap();
    for tied in [false, true] {
        for lora in [false, true] {
            let mut cfg = DecoderConfig::tiny(64, 32);
            cfg.tie_word_embeddings = tied;
            let model = LlamaForCausalLM::<A>::init_seeded(&cfg, 0.1, 8, &device);
            let model = if lora {
                let lc = LoraConfig::new(LoraTarget::ALL.to_vec())
                    .with_rank(4)
                    .with_alpha(8.0);
                let m = model.with_lora(&lc, &device).unwrap();
                // Non-zero B so the adapters' gradients depend on both factors.
                m.map(&mut NudgeB)
            } else {
                model
            };
            for reduction in [LogProbReduction::Sum, LogProbReduction::Mean] {
                let what = format!("tied={tied} lora={lora} {reduction:?}");
                let (l_full, g_full) = run(&model, LogProbStrategy::Full, reduction);
                let (l_chunk, g_chunk) = run(&model, chunked, reduction);
                assert!(
                    (l_full - l_chunk).abs() <= 1e-6 * l_full.abs().max(1.0),
                    "{what}: loss {l_full} vs {l_chunk}"
                );
                let mut with_grad = 0;
                let mut worst = 0.0f32;
                for ((n, a), (_, b)) in g_full.iter().zip(&g_chunk) {
                    match (a, b) {
                        (Some(a), Some(b)) => {
                            with_grad += 1;
                            let scale = a.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
                            let e = a
                                .iter()
                                .zip(b)
                                .map(|(x, y)| (x - y).abs())
                                .fold(0.0, f32::max)
                                / scale;
                            worst = worst.max(e);
                        }
                        (None, None) => {}
                        _ => panic!(
                            "{what}: a {n}-element parameter has a gradient in one path only"
                        ),
                    }
                }
                assert!(
                    worst < 1e-5,
                    "{what}: worst relative gradient error {worst}"
                );
                let expected = if lora {
                    2 * 7 * cfg.num_hidden_layers
                } else {
                    g_full.len()
                };
                assert_eq!(with_grad, expected, "{what}");
            }
        }
    }
}

/// Sets every LoRA `B` to a small non-zero pattern.
struct NudgeB;

impl burn::module::ModuleMapper<A> for NudgeB {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<A, D>>) -> Param<Tensor<A, D>> {
        param.map(|tensor| {
            let dims = tensor.dims();
            // lora_b is [r, d_out] with r = 4 and starts at zero.
            let is_b = D == 2 && dims[0] == 4 && tensor.clone().abs().max().into_scalar() == 0.0;
            if !is_b {
                return tensor;
            }
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|i| ((i * 37) % 11) as f32 / 50.0 - 0.1)
                .collect();
            Tensor::<A, D>::from_data(burn::tensor::TensorData::new(v, dims), &tensor.device())
                .require_grad()
        })
    }
}

#[test]
fn inference_paths_agree() {
    let device = Default::default();
    for tied in [false, true] {
        let mut cfg = DecoderConfig::tiny(64, 32);
        cfg.tie_word_embeddings = tied;
        let model = LlamaForCausalLM::<A>::init_seeded(&cfg, 0.1, 9, &device).valid();
        let (ids, attn, target) = batch();
        let (ids, attn, target) = (ids.inner(), attn.inner(), target.inner());
        for reduction in [LogProbReduction::Sum, LogProbReduction::Mean] {
            let full = model
                .sequence_logprobs_using(
                    ids.clone(),
                    Some(attn.clone()),
                    target.clone(),
                    reduction,
                    LogProbStrategy::Full,
                )
                .unwrap()
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            let chunked = model
                .sequence_logprobs(ids.clone(), Some(attn.clone()), target.clone(), reduction)
                .unwrap()
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            for (a, b) in full.iter().zip(&chunked) {
                assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{a} vs {b}");
            }
        }
    }
}
