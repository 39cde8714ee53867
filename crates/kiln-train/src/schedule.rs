//! Learning-rate schedule: linear warmup then cosine decay (HF `get_cosine_schedule_with_warmup`).
//!
//! burn's `Composed` scheduler applies its parts simultaneously, so the two phases are written out
//! here. The step argument is the number of optimiser steps already taken, exactly like the
//! multiplier HF's `LambdaLR` applies: with `warmup_steps > 0` the very first update uses lr 0.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Linear warmup from 0 to `peak_lr` over `warmup_steps`, then a half cosine from `peak_lr` down to
/// `min_lr_ratio * peak_lr` at `total_steps` (constant afterwards).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub peak_lr: f64,
    /// Number of warmup steps (0 = start at the peak).
    pub warmup_steps: usize,
    /// Total number of optimiser steps of the run.
    pub total_steps: usize,
    /// Final learning rate as a fraction of the peak (0 = HF's cosine schedule).
    pub min_lr_ratio: f64,
}

impl LrSchedule {
    /// Validates and builds a schedule.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a non-positive or non-finite `peak_lr`, `total_steps == 0`,
    /// `warmup_steps > total_steps` or `min_lr_ratio` outside `[0, 1]`.
    pub fn new(
        peak_lr: f64,
        warmup_steps: usize,
        total_steps: usize,
        min_lr_ratio: f64,
    ) -> Result<Self> {
        if !(peak_lr.is_finite() && peak_lr > 0.0) {
            return Err(Error::InvalidConfig(format!(
                "lr must be a positive finite number, got {peak_lr}"
            )));
        }
        if total_steps == 0 {
            return Err(Error::InvalidConfig("total_steps must be > 0".into()));
        }
        if warmup_steps > total_steps {
            return Err(Error::InvalidConfig(format!(
                "warmup_steps ({warmup_steps}) exceeds total_steps ({total_steps})"
            )));
        }
        if !(0.0..=1.0).contains(&min_lr_ratio) {
            return Err(Error::InvalidConfig(format!(
                "min_lr_ratio must be in [0, 1], got {min_lr_ratio}"
            )));
        }
        Ok(Self {
            peak_lr,
            warmup_steps,
            total_steps,
            min_lr_ratio,
        })
    }

    /// The multiplier of `peak_lr` after `step` optimiser steps.
    pub fn factor(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        let decay_steps = (self.total_steps - self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine
    }

    /// The learning rate of the update that follows `step` completed optimiser steps.
    pub fn lr(&self, step: usize) -> f64 {
        self.peak_lr * self.factor(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = LrSchedule::new(1.0, 4, 12, 0.0).unwrap();
        let lrs: Vec<f64> = (0..=12).map(|t| s.lr(t)).collect();
        assert_eq!(&lrs[..5], &[0.0, 0.25, 0.5, 0.75, 1.0]);
        // Halfway through the decay the cosine is at one half.
        assert!((lrs[8] - 0.5).abs() < 1e-12);
        assert!(lrs[12].abs() < 1e-12);
        assert!(lrs[5..].windows(2).all(|w| w[1] < w[0]));
        assert!(s.lr(100).abs() < 1e-12, "constant after the end");
    }

    #[test]
    fn min_ratio_and_no_warmup() {
        let s = LrSchedule::new(2.0, 0, 10, 0.1).unwrap();
        assert_eq!(s.lr(0), 2.0);
        assert!((s.lr(10) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn rejects_bad_values() {
        assert!(LrSchedule::new(0.0, 0, 10, 0.0).is_err());
        assert!(LrSchedule::new(1.0, 11, 10, 0.0).is_err());
        assert!(LrSchedule::new(1.0, 0, 0, 0.0).is_err());
        assert!(LrSchedule::new(1.0, 0, 10, 1.5).is_err());
        assert!(LrSchedule::new(f64::NAN, 0, 10, 0.0).is_err());
    }
}
