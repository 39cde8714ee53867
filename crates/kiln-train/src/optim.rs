//! [`TrainConfig`]: every hyper-parameter of the shared optimiser loop, with PyTorch/HF defaults.

use burn::config::Config;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig};
use burn::tensor::backend::AutodiffBackend;

use crate::error::Error;
use crate::schedule::LrSchedule;

/// Hyper-parameters of [`TrainLoop`](crate::TrainLoop).
///
/// Defaults follow HF `TrainingArguments` / `torch.optim.AdamW` (not burn's `AdamWConfig`, whose
/// epsilon is 1e-5 and weight decay 1e-4): betas (0.9, 0.999), epsilon 1e-8, weight decay 0,
/// `max_grad_norm` 1.0. Weight decay, when set, applies to every parameter (burn's AdamW has no
/// parameter groups).
///
/// One optimiser step consumes `grad_accum_steps` micro-batches of `micro_batch_size` examples, so
/// the global batch is their product.
#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    /// Total number of optimiser steps (the length of the cosine schedule).
    pub total_steps: usize,
    /// Peak learning rate.
    #[config(default = 1e-5)]
    pub lr: f64,
    /// Linear warmup steps (see also [`Self::warmup_ratio`]).
    #[config(default = 0)]
    pub warmup_steps: usize,
    /// Linear warmup as a fraction of `total_steps`: `floor(warmup_ratio * total_steps)` steps
    /// (HF's `warmup_ratio`), used instead of `warmup_steps` when above 0. For schedules whose
    /// length comes from the data (the online loop's iterations).
    #[config(default = 0.0)]
    pub warmup_ratio: f64,
    /// Final learning rate as a fraction of the peak (0 = decay to 0, like HF).
    #[config(default = 0.0)]
    pub min_lr_ratio: f64,
    /// AdamW `beta1`.
    #[config(default = 0.9)]
    pub beta1: f64,
    /// AdamW `beta2`.
    #[config(default = 0.999)]
    pub beta2: f64,
    /// AdamW epsilon (PyTorch default 1e-8).
    #[config(default = 1e-8)]
    pub epsilon: f64,
    /// Decoupled weight decay (HF default 0).
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Clip gradients to this global L2 norm (HF default 1.0); `None` disables clipping.
    #[config(default = "Some(1.0)")]
    pub max_grad_norm: Option<f64>,
    /// Micro-batches accumulated per optimiser step.
    #[config(default = 1)]
    pub grad_accum_steps: usize,
    /// Examples per micro-batch.
    #[config(default = 8)]
    pub micro_batch_size: usize,
    /// Log metrics through `tracing` every this many optimiser steps (0 = never).
    #[config(default = 10)]
    pub log_every: usize,
    /// Seed of the data order.
    #[config(default = 42)]
    pub seed: u64,
}

impl TrainConfig {
    /// Checks every field and returns the learning-rate schedule.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the bad field.
    pub fn schedule(&self) -> crate::Result<LrSchedule> {
        let bad = |what: String| Err(Error::InvalidConfig(what));
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad(format!(
                "betas must be in [0, 1), got ({}, {})",
                self.beta1, self.beta2
            ));
        }
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return bad(format!("epsilon must be > 0, got {}", self.epsilon));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!(
                "weight_decay must be >= 0, got {}",
                self.weight_decay
            ));
        }
        if let Some(m) = self.max_grad_norm
            && !(m > 0.0 && m.is_finite())
        {
            return bad(format!("max_grad_norm must be > 0, got {m}"));
        }
        if self.grad_accum_steps == 0 {
            return bad("grad_accum_steps must be > 0".into());
        }
        if self.micro_batch_size == 0 {
            return bad("micro_batch_size must be > 0".into());
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return bad(format!(
                "warmup_ratio must be in [0, 1], got {}",
                self.warmup_ratio
            ));
        }
        LrSchedule::new(self.lr, self.warmup(), self.total_steps, self.min_lr_ratio)
    }

    /// Warmup steps: `floor(warmup_ratio * total_steps)` when `warmup_ratio > 0`, else
    /// `warmup_steps`.
    pub fn warmup(&self) -> usize {
        if self.warmup_ratio > 0.0 {
            (self.warmup_ratio * self.total_steps as f64).floor() as usize
        } else {
            self.warmup_steps
        }
    }

    /// Examples per optimiser step: `micro_batch_size * grad_accum_steps`.
    pub fn global_batch_size(&self) -> usize {
        self.micro_batch_size * self.grad_accum_steps
    }

    /// burn's AdamW with this config's betas, epsilon and weight decay set explicitly (no burn
    /// gradient clipping: [`TrainLoop`](crate::TrainLoop) clips by global norm itself).
    pub fn adamw<B: AutodiffBackend, M: AutodiffModule<B>>(&self) -> OptimizerAdaptor<AdamW, M, B> {
        AdamWConfig::new()
            .with_beta_1(self.beta1 as f32)
            .with_beta_2(self.beta2 as f32)
            .with_epsilon(self.epsilon as f32)
            .with_weight_decay(self.weight_decay as f32)
            .init::<B, M>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_pytorch_like_and_validated() {
        let c = TrainConfig::new(10);
        assert_eq!(c.epsilon, 1e-8);
        assert_eq!(c.weight_decay, 0.0);
        assert_eq!(c.max_grad_norm, Some(1.0));
        assert!(c.schedule().is_ok());
        assert!(
            TrainConfig::new(10)
                .with_grad_accum_steps(0)
                .schedule()
                .is_err()
        );
        assert!(TrainConfig::new(10).with_epsilon(0.0).schedule().is_err());
        assert!(
            TrainConfig::new(10)
                .with_max_grad_norm(Some(-1.0))
                .schedule()
                .is_err()
        );
        let json = serde_json::to_string(&c).unwrap();
        let back: TrainConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.max_grad_norm, Some(1.0));
        assert_eq!(back.total_steps, 10);
    }
}
