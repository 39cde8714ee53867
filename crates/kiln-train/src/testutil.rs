//! Shared helpers of the trainers' unit tests: tiny models on the built-in tiny tokenizer.

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use kiln_data::examples::{encode_pair, encode_reward_input, encode_sft};
use kiln_data::{
    ChatTemplate, Content, Example, Message, PairRecord, SftRecord, Tokenizer, TruncationConfig,
};
use kiln_model::DecoderConfig;

pub type TB = Autodiff<Flex>;

pub struct Tiny {
    pub tok: Tokenizer,
    pub template: ChatTemplate,
    pub pad: u32,
    pub config: DecoderConfig,
}

pub fn tiny() -> Tiny {
    let tok = Tokenizer::builtin_tiny().unwrap();
    let template = ChatTemplate::llama3(&tok).unwrap();
    let pad = tok.pad_id().unwrap();
    let mut config = DecoderConfig::tiny(tok.vocab_size(), 32);
    config.pad_token_id = Some(pad);
    Tiny {
        tok,
        template,
        pad,
        config,
    }
}

const WORDS: [&str; 8] = [
    "apple", "river", "stone", "cloud", "green", "music", "table", "light",
];

pub fn prompt(i: usize) -> String {
    format!(
        "Tell me about {} and {}.",
        WORDS[i % 8],
        WORDS[(i / 8 + 3 * i) % 8]
    )
}

impl Tiny {
    pub fn sft(&self, range: std::ops::Range<usize>) -> Vec<Example> {
        range
            .map(|i| {
                let rec = SftRecord {
                    messages: vec![
                        Message::user(prompt(i)),
                        Message::assistant(format!(
                            "The {} is good and the answer is yes.",
                            WORDS[i % 8]
                        )),
                    ],
                };
                encode_sft(&self.tok, &self.template, &rec, 128).unwrap()
            })
            .collect()
    }

    pub fn pair_record(&self, i: usize) -> PairRecord {
        PairRecord {
            prompt: Content::Text(prompt(i)),
            chosen: Content::Text(format!("yes, {} is fine.", WORDS[i % 8])),
            rejected: Content::Text(format!("no, {} is bad.", WORDS[(i + 1) % 8])),
            margin: Some(1.0),
        }
    }

    pub fn dpo_pairs(&self, range: std::ops::Range<usize>) -> Vec<(Example, Example)> {
        let trunc = TruncationConfig {
            max_prompt_len: 64,
            max_total_len: 128,
        };
        range
            .map(|i| encode_pair(&self.tok, &self.template, &self.pair_record(i), &trunc).unwrap())
            .collect()
    }

    pub fn reward_input(&self, p: &str, r: &str) -> Example {
        let ids = encode_reward_input(
            &self.tok,
            &self.template,
            &Content::Text(p.into()),
            &Content::Text(r.into()),
            128,
        )
        .unwrap();
        Example {
            loss_mask: vec![false; ids.len()],
            ids,
        }
    }
}

struct Flat(Vec<f32>);

impl<B: Backend> ModuleVisitor<B> for Flat {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.extend(
            param
                .val()
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap(),
        );
    }
}

/// Every float parameter of a module, flattened in visiting order.
pub fn flat_params<B: Backend, M: Module<B>>(m: &M) -> Vec<f32> {
    let mut f = Flat(Vec::new());
    m.visit(&mut f);
    f.0
}

/// Largest `|a - b|` relative to the largest `|b|`.
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

/// Runs `steps` optimiser steps with `strategy` from the same start and returns the per-step
/// stats and the final weights.
pub fn steps_with<M, F>(model: M, steps: usize, mut step: F) -> (Vec<crate::StepStats>, Vec<f32>)
where
    M: burn::module::AutodiffModule<TB>,
    F: FnMut(&mut crate::TrainLoop<TB, M>) -> crate::StepStats,
{
    let config = crate::TrainConfig::new(steps)
        .with_lr(1e-3)
        .with_micro_batch_size(4)
        .with_grad_accum_steps(2)
        // A large epsilon keeps AdamW's update Lipschitz in the gradient (near-zero gradient
        // entries would otherwise turn rounding differences into sign flips of `g / |g|`).
        .with_epsilon(1e-3)
        .with_log_every(0);
    let mut train = crate::TrainLoop::new(model, config).unwrap();
    let stats = (0..steps).map(|_| step(&mut train)).collect();
    (stats, flat_params(train.model().unwrap()))
}
