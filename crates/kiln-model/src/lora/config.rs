//! [`LoraConfig`]: rank, alpha, dropout, rsLoRA scaling and target projections of a LoRA adapter.

use burn::config::Config;
use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

use super::adapter::LoraAdapter;
use super::target::LoraTarget;
use crate::error::Error;

/// Hyper-parameters of a LoRA adapter, with PEFT's defaults (`r = 8`, `lora_alpha = 8`, no
/// dropout, no rsLoRA).
///
/// The adapted projection computes `W x + scaling * B A dropout(x)` with `A: [r, in]`,
/// `B: [out, r]` (PEFT layout) and `scaling = alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
#[derive(Config, Debug, PartialEq)]
pub struct LoraConfig {
    /// The projections that get an adapter (in every decoder layer).
    pub targets: Vec<LoraTarget>,
    /// Rank `r` of the update.
    #[config(default = 8)]
    pub rank: usize,
    /// `lora_alpha`.
    #[config(default = 8.0)]
    pub alpha: f64,
    /// Dropout probability on the adapter's input (training only, as in PEFT).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// rsLoRA: scale by `alpha / sqrt(r)` instead of `alpha / r`.
    #[config(default = false)]
    pub use_rslora: bool,
    /// `base_model_name_or_path` written to `adapter_config.json` (informational; PEFT's
    /// `AutoPeftModel` loads the base from it).
    #[config(default = "None")]
    pub base_model_name_or_path: Option<String>,
}

impl LoraConfig {
    /// The factor applied to `B A x`: `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    /// Whether `target` gets an adapter.
    pub fn targets_contain(&self, target: LoraTarget) -> bool {
        self.targets.contains(&target)
    }

    /// Checks the values: rank > 0, finite alpha, dropout in `[0, 1)`, at least one target.
    ///
    /// # Errors
    /// [`Error::InvalidLora`] naming the bad field.
    pub fn validate(&self) -> crate::error::Result<()> {
        let bad = |m: String| Err(Error::InvalidLora(m));
        if self.rank == 0 {
            return bad("LoRA rank `r` must be > 0".into());
        }
        if !self.alpha.is_finite() {
            return bad(format!("lora_alpha must be finite, got {}", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!(
                "lora_dropout must be in [0, 1), got {}",
                self.dropout
            ));
        }
        if self.targets.is_empty() {
            return bad(format!(
                "no LoRA target modules given; valid names: {}",
                LoraTarget::valid_names()
            ));
        }
        Ok(())
    }

    /// A fresh adapter for a `d_in -> d_out` projection, initialised like PEFT: `A` from
    /// `nn.init.kaiming_uniform_(a = sqrt(5))`, i.e. `U(-1/sqrt(d_in), 1/sqrt(d_in))`, and `B = 0`,
    /// so the adapted projection starts equal to the base. Both are trainable. Random values come
    /// from the backend's RNG (seed it with `B::seed` for reproducible runs).
    pub fn init_adapter<B: Backend>(
        &self,
        d_in: usize,
        d_out: usize,
        device: &B::Device,
    ) -> LoraAdapter<B> {
        let bound = 1.0 / (d_in as f64).sqrt();
        let a = Tensor::random(
            [d_in, self.rank],
            Distribution::Uniform(-bound, bound),
            device,
        );
        let b = Tensor::zeros([self.rank, d_out], device);
        self.adapter_from(a, b)
    }

    /// An adapter with the given matrices in burn layout (`A: [in, r]`, `B: [r, out]`, i.e. the
    /// transposes of PEFT's `lora_A.weight` / `lora_B.weight`), trainable.
    pub fn adapter_from<B: Backend>(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> LoraAdapter<B> {
        LoraAdapter {
            lora_a: Param::from_tensor(a),
            lora_b: Param::from_tensor(b),
            scaling: self.scaling(),
            dropout: self.dropout_module(),
        }
    }

    fn dropout_module(&self) -> Dropout {
        DropoutConfig::new(self.dropout).init()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_and_validation() {
        let c = LoraConfig::new(vec![LoraTarget::Q])
            .with_rank(16)
            .with_alpha(32.0);
        assert_eq!(c.scaling(), 2.0);
        assert_eq!(c.clone().with_use_rslora(true).scaling(), 8.0);
        assert!(c.validate().is_ok());
        for bad in [
            c.clone().with_rank(0),
            c.clone().with_dropout(1.0),
            c.clone().with_dropout(-0.1),
            c.clone().with_alpha(f64::NAN),
            LoraConfig {
                targets: vec![],
                ..c.clone()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(Error::InvalidLora(_))),
                "{bad:?}"
            );
        }
        let d = LoraConfig::new(vec![LoraTarget::V]);
        assert_eq!(
            (d.rank, d.alpha, d.dropout, d.use_rslora),
            (8, 8.0, 0.0, false)
        );
    }
}
