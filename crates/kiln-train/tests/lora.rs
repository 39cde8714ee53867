//! LoRA through the shared `TrainLoop`: AdamW keeps state only for the adapter tensors (and a
//! reward model's score head), base weights stay bit-identical, and the adapters learn.
#![cfg(test)]
#![allow(clippy::print_stderr)]

use std::collections::HashMap;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::Optimizer;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use kiln_model::prelude::*;
use kiln_model::{
    DecoderConfig, LlamaForCausalLM, LlamaForSequenceClassification, LogProbReduction, LoraConfig,
    LoraTarget,
};
use kiln_train::{StepLoss, TrainConfig, TrainLoop};

type TB = Autodiff<Flex>;

/// `(id, rank, elements)` of every float parameter, in visiting order.
struct Params(Vec<(ParamId, usize, usize)>);

impl<B: Backend> ModuleVisitor<B> for Params {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
        self.0.push((p.id, D, p.shape().num_elements()));
    }
}

fn params<B: Backend, M: Module<B>>(m: &M) -> Vec<(ParamId, usize, usize)> {
    let mut v = Params(Vec::new());
    m.visit(&mut v);
    v.0
}

struct Values(HashMap<ParamId, Vec<f32>>);

impl<B: Backend> ModuleVisitor<B> for Values {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
        let v = p
            .val()
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap();
        self.0.insert(p.id, v);
    }
}

fn values<B: Backend, M: Module<B>>(m: &M) -> HashMap<ParamId, Vec<f32>> {
    let mut v = Values(HashMap::new());
    m.visit(&mut v);
    v.0
}

/// Entries of the AdamW record and their total number of moment elements (`m` and `v`).
fn adamw_state<M: Module<TB> + burn::module::AutodiffModule<TB>>(
    train: &TrainLoop<TB, M>,
) -> (Vec<ParamId>, usize) {
    let ranks: HashMap<ParamId, usize> = params(train.model().unwrap())
        .into_iter()
        .map(|(id, d, _)| (id, d))
        .collect();
    let mut ids = Vec::new();
    let mut elements = 0;
    for (id, rec) in train.optimizer().to_record() {
        let n = match ranks[&id] {
            1 => {
                let s = rec.into_state::<1>().momentum;
                s.moment_1.shape().num_elements() + s.moment_2.shape().num_elements()
            }
            2 => {
                let s = rec.into_state::<2>().momentum;
                s.moment_1.shape().num_elements() + s.moment_2.shape().num_elements()
            }
            d => panic!("unexpected rank {d}"),
        };
        ids.push(id);
        elements += n;
    }
    (ids, elements)
}

fn batch(device: &burn::backend::flex::FlexDevice) -> (Tensor<TB, 2, Int>, Tensor<TB, 2, Int>) {
    let ids = Tensor::from_data(
        TensorData::new(
            vec![1i64, 5, 9, 13, 17, 21, 25, 29, 0, 0, 4, 8, 12, 16, 20, 24],
            [2, 8],
        ),
        device,
    );
    let mask = Tensor::from_data(
        TensorData::new(
            vec![1i64, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1],
            [2, 8],
        ),
        device,
    );
    (ids, mask)
}

fn config(steps: usize) -> TrainConfig {
    TrainConfig::new(steps)
        .with_lr(1e-2)
        .with_micro_batch_size(1)
        .with_log_every(0)
}

fn nll(m: &LlamaForCausalLM<TB>) -> kiln_train::Result<StepLoss<TB>> {
    let device = Default::default();
    let (ids, mask) = batch(&device);
    let target = mask.clone().float();
    let lp = m
        .sequence_logprobs(ids, Some(mask), target, LogProbReduction::Mean)
        .unwrap();
    Ok(StepLoss::new(lp.mean().neg()))
}

#[test]
fn adamw_keeps_state_only_for_lora_adapters_and_the_base_is_untouched() {
    let device = Default::default();
    let cfg = DecoderConfig::tiny(64, 32);
    let base = LlamaForCausalLM::<TB>::init_seeded(&cfg, 0.1, 11, &device);
    let base_values = values(&base);
    let n_full = base.num_params();
    let n_full_tensors = params(&base).len();

    // Full fine-tuning: a moment pair for every parameter.
    let mut full = TrainLoop::new(base.clone(), config(3)).unwrap();
    for _ in 0..3 {
        full.train_step(&[()], |m, _| nll(m)).unwrap();
    }
    let (full_ids, full_elems) = adamw_state(&full);
    assert_eq!(full_ids.len(), n_full_tensors);
    assert_eq!(full_elems, 2 * n_full);

    // LoRA on q, v, down: state only for the adapters.
    let lcfg = LoraConfig::new(vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Down])
        .with_rank(4)
        .with_alpha(8.0);
    let lora = base.with_lora(&lcfg, &device).unwrap();
    let n_adapter = lora.num_adapter_params();
    let adapter_tensors = 2 * cfg.num_hidden_layers * lcfg.targets.len();
    let mut train = TrainLoop::new(lora, config(3)).unwrap();
    let first = train.train_step(&[()], |m, _| nll(m)).unwrap();
    let mut last = first.clone();
    for _ in 0..2 {
        last = train.train_step(&[()], |m, _| nll(m)).unwrap();
    }
    assert!(last.loss < first.loss, "{} -> {}", first.loss, last.loss);
    let (ids, elems) = adamw_state(&train);
    assert_eq!(
        ids.len(),
        adapter_tensors,
        "one AdamW entry per adapter tensor"
    );
    assert_eq!(
        elems,
        2 * n_adapter,
        "moments only for the adapter parameters"
    );
    eprintln!(
        "AdamW state, tiny model ({n_full} params): full fine-tuning {} tensors / {} floats ({} bytes); \
         LoRA r=4 on q,v,down: {} tensors / {} floats ({} bytes)",
        full_ids.len(),
        full_elems,
        4 * full_elems,
        ids.len(),
        elems,
        4 * elems
    );

    // Every base tensor is bit-identical after the updates; the adapters moved.
    let model = train.model().unwrap();
    let after = values(&model.without_adapters());
    assert_eq!(after.len(), base_values.len());
    for (id, v) in &after {
        assert!(base_values[id] == *v, "base parameter {id} changed");
    }
    let b_moved = model.model.layers[0]
        .self_attn
        .q_proj
        .lora
        .as_ref()
        .unwrap()
        .lora_b
        .val()
        .abs()
        .sum()
        .into_scalar();
    assert!(b_moved > 0.0, "B left zero");
}

#[test]
fn reward_model_lora_trains_adapters_and_the_score_head() {
    let device = Default::default();
    let cfg = DecoderConfig::tiny(64, 32);
    let rm = LlamaForSequenceClassification::from_causal_lm(
        LlamaForCausalLM::<TB>::init_seeded(&cfg, 0.1, 12, &device),
        0.1,
    );
    let decoder_before = values(&rm.model);
    let lcfg = LoraConfig::new(vec![LoraTarget::K, LoraTarget::O]).with_rank(2);
    let rm = rm.with_lora(&lcfg, &device).unwrap();
    let score_id = rm.score.weight.id;
    let score_before = values(&rm.score);
    let n_adapter = rm.num_adapter_params();
    let mut train = TrainLoop::new(rm, config(2)).unwrap();
    for _ in 0..2 {
        train
            .train_step(&[()], |m: &LlamaForSequenceClassification<TB>, _| {
                let (ids, mask) = batch(&device);
                let s = m.forward(ids, Some(mask)).unwrap();
                // Bradley-Terry on (row 0 preferred over row 1).
                let margin = s.clone().narrow(0, 0, 1) - s.narrow(0, 1, 1);
                let loss = burn::tensor::activation::softplus(margin.neg(), 1.0);
                Ok(StepLoss::new(loss))
            })
            .unwrap();
    }
    let (ids, elems) = adamw_state(&train);
    assert_eq!(ids.len(), 2 * cfg.num_hidden_layers * 2 + 1);
    assert!(
        ids.contains(&score_id),
        "the score head has optimiser state"
    );
    assert_eq!(elems, 2 * (n_adapter + cfg.hidden_size));
    let model = train.model().unwrap();
    assert!(
        values(&model.score) != score_before,
        "the score head trained"
    );
    let decoder_after = values(&model.without_adapters().model);
    for (id, v) in &decoder_after {
        assert!(decoder_before[id] == *v, "decoder parameter {id} changed");
    }
}

/// A LoRA training checkpoint holds the frozen base plus the PEFT adapter and resumes exactly:
/// the resumed run's next steps equal the uninterrupted run's.
#[test]
fn lora_checkpoints_resume_exactly() {
    let device = Default::default();
    let cfg = DecoderConfig::tiny(64, 32);
    let lcfg = LoraConfig::new(vec![LoraTarget::Q, LoraTarget::Up])
        .with_rank(2)
        .with_alpha(4.0);
    TB::seed(&device, 5);
    let model = LlamaForCausalLM::<TB>::init_seeded(&cfg, 0.1, 13, &device)
        .with_lora(&lcfg, &device)
        .unwrap();
    let mut a = TrainLoop::new(model, config(4)).unwrap();
    for _ in 0..2 {
        a.train_step(&[()], |m, _| nll(m)).unwrap();
    }
    let dir = std::env::temp_dir().join(format!("kiln-lora-ckpt-{}", std::process::id()));
    a.save_checkpoint(&dir).unwrap();
    assert!(dir.join("adapter_config.json").exists() && dir.join("model.safetensors").exists());
    let mut b: TrainLoop<TB, LlamaForCausalLM<TB>> = TrainLoop::resume(&dir, &device).unwrap();
    assert!(b.model().unwrap().has_adapters());
    assert_eq!(b.step(), 2);
    for _ in 0..2 {
        let sa = a.train_step(&[()], |m, _| nll(m)).unwrap();
        let sb = b.train_step(&[()], |m, _| nll(m)).unwrap();
        assert_eq!(
            sa.loss, sb.loss,
            "resumed LoRA run diverged at step {}",
            sa.step
        );
    }
    let (ids, _) = adamw_state(&b);
    assert_eq!(
        ids.len(),
        2 * cfg.num_hidden_layers * 2,
        "still adapter-only state"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
