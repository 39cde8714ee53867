//! The model trains: gradients reach every parameter (tied head included) under autodiff.
#![cfg(test)]

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::{Int, Tensor};
use kiln_model::prelude::*;
use kiln_model::{DecoderConfig, LlamaForCausalLM, LlamaForSequenceClassification};

type A = Autodiff<Flex>;

#[test]
fn sgd_step_lowers_the_loss_and_touches_every_parameter() {
    let device = Default::default();
    for tied in [false, true] {
        let mut cfg = DecoderConfig::tiny(64, 32);
        cfg.tie_word_embeddings = tied;
        let model = LlamaForCausalLM::<A>::init_seeded(&cfg, 0.1, 6, &device);
        let n_params = model.num_params();
        assert_eq!(n_params, cfg.num_parameters());
        let ids: Tensor<A, 2, Int> =
            Tensor::from_data([[1, 5, 9, 13, 17, 21], [0, 0, 4, 8, 12, 16]], &device);
        let mask: Tensor<A, 2, Int> =
            Tensor::from_data([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], &device);
        let target = mask.clone().float();
        let loss = |m: &LlamaForCausalLM<A>| {
            m.sequence_logprobs(
                ids.clone(),
                Some(mask.clone()),
                target.clone(),
                kiln_model::LogProbReduction::Sum,
            )
            .unwrap()
            .sum()
            .neg()
        };
        let l0 = loss(&model);
        let v0 = l0.clone().into_scalar();
        let grads = l0.backward();
        let grads = GradientsParams::from_grads(grads, &model);
        assert_eq!(
            grads.len(),
            model.num_params_tensors(),
            "tied={tied}: some parameter got no gradient"
        );
        let mut opt = SgdConfig::new().init();
        let model = opt.step(0.05, model, grads);
        let v1 = loss(&model).into_scalar();
        assert!(v1 < v0, "tied={tied}: loss did not decrease ({v0} -> {v1})");
    }
}

trait CountTensors {
    fn num_params_tensors(&self) -> usize;
}

impl<M: Module<A>> CountTensors for M {
    fn num_params_tensors(&self) -> usize {
        struct V(usize);
        impl burn::module::ModuleVisitor<A> for V {
            fn visit_float<const D: usize>(&mut self, _p: &burn::module::Param<Tensor<A, D>>) {
                self.0 += 1;
            }
        }
        let mut v = V(0);
        self.visit(&mut v);
        v.0
    }
}

#[test]
fn reward_model_backward() {
    let device = Default::default();
    let cfg = DecoderConfig::tiny(64, 32);
    let lm = LlamaForCausalLM::<A>::init_seeded(&cfg, 0.1, 7, &device);
    let rm = LlamaForSequenceClassification::from_causal_lm(lm, 0.02);
    let ids: Tensor<A, 2, Int> = Tensor::from_data([[1, 5, 9, 0], [3, 4, 0, 0]], &device);
    let scores = rm.forward(ids, None).unwrap();
    assert_eq!(scores.dims(), [2]);
    let grads = scores.sum().backward();
    let g = rm.score.weight.grad(&grads).expect("score head gradient");
    assert_eq!(g.dims(), [32, 1]);
}
