//! Attaching, removing and merging LoRA adapters on [`LlamaForCausalLM`] and
//! [`LlamaForSequenceClassification`].
//!
//! Attaching freezes every base parameter through burn's require-grad flag, so a backward pass
//! yields gradients only for the adapters (and, for the classifier, the `score` head) and burn's
//! optimisers keep no state for the frozen weights.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};

use super::config::LoraConfig;
use super::target::LoraTarget;
use crate::causal_lm::LlamaForCausalLM;
use crate::classifier::LlamaForSequenceClassification;
use crate::error::{Error, Result};
use crate::model::LlamaModel;

/// Marks every parameter trainable again (after a merge the model is a plain model).
struct Unfreeze;

impl<B: Backend> ModuleMapper<B> for Unfreeze {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.set_require_grad(true)
    }
}

impl<B: Backend> LlamaModel<B> {
    /// Whether LoRA adapters are attached.
    pub fn has_adapters(&self) -> bool {
        self.lora.is_some()
    }

    /// The LoRA config of the attached adapters.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    /// Number of adapter parameters (elements of every `A` and `B`).
    pub fn num_adapter_params(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|l| LoraTarget::ALL.map(|t| l.projection(t)))
            .filter_map(|p| p.lora.as_ref())
            .map(|a| a.lora_a.num_params() + a.lora_b.num_params())
            .sum()
    }

    /// Fails unless the config is valid and no adapter is attached yet.
    pub(crate) fn check_can_attach(&self, config: &LoraConfig) -> Result<()> {
        config.validate()?;
        if self.has_adapters() {
            return Err(Error::InvalidLora(
                "the model already has LoRA adapters; call merge_adapters() or \
                 without_adapters() first"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Attaches adapters built by `make(layer, target, d_in, d_out)` to every target projection
    /// (the caller has frozen the base).
    pub(crate) fn attach_with<F>(mut self, config: &LoraConfig, mut make: F) -> Result<Self>
    where
        F: FnMut(usize, LoraTarget, usize, usize) -> Result<super::LoraAdapter<B>>,
    {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for &t in &config.targets {
                let proj = layer.projection_mut(t);
                let [d_in, d_out] = proj.dims();
                proj.lora = Some(make(i, t, d_in, d_out)?);
            }
        }
        self.lora = Some(config.clone());
        Ok(self)
    }

    /// A copy without adapters (base tensors shared, still frozen).
    pub(crate) fn strip_adapters(&self) -> Self {
        let mut m = self.clone();
        for layer in &mut m.layers {
            for t in LoraTarget::ALL {
                layer.projection_mut(t).lora = None;
            }
        }
        m.lora = None;
        m
    }

    /// Folds every adapter into its base weight: `W <- W + scaling * A^T B^T` (burn layout).
    pub(crate) fn merge(mut self) -> Self {
        for layer in &mut self.layers {
            for t in LoraTarget::ALL {
                let proj = layer.projection_mut(t);
                if let Some(lora) = proj.lora.take() {
                    let delta = lora.delta_weight();
                    let w = proj.base.weight.clone();
                    proj.base.weight = w.map(|w| {
                        let dtype = w.dtype();
                        if dtype == delta.dtype() {
                            (w + delta).detach()
                        } else {
                            // bf16 base, f32 adapter: one rounding of the f32 sum, like PEFT.
                            let to = FloatDType::from(delta.dtype());
                            (w.cast(to) + delta).cast(FloatDType::from(dtype)).detach()
                        }
                    });
                }
            }
        }
        self.lora = None;
        self
    }
}

impl<B: Backend> LlamaForCausalLM<B> {
    /// Attaches fresh LoRA adapters (PEFT init: `A` Kaiming-uniform, `B = 0`, so the model still
    /// computes the base) to `config.targets` in every layer and freezes all base parameters
    /// (embeddings, norms, projections, LM head): only the adapters receive gradients.
    ///
    /// # Errors
    /// [`Error::InvalidLora`] for an invalid config or a model that already has adapters.
    pub fn with_lora(self, config: &LoraConfig, device: &B::Device) -> Result<Self> {
        self.model.check_can_attach(config)?;
        let mut frozen = self.no_grad();
        frozen.model = frozen.model.attach_with(config, |_, _, d_in, d_out| {
            Ok(config.init_adapter(d_in, d_out, device))
        })?;
        tracing::info!(
            rank = config.rank,
            targets = ?config.targets,
            adapter_params = frozen.num_adapter_params(),
            "attached LoRA adapters"
        );
        Ok(frozen)
    }

    /// The base model: a cheap copy (tensors shared) without the adapters, e.g. DPO's reference
    /// for a LoRA policy. Its parameters stay frozen (no gradients are tracked through it).
    pub fn without_adapters(&self) -> Self {
        Self {
            model: self.model.strip_adapters(),
            lm_head: self.lm_head.clone(),
        }
    }

    /// Folds the adapters into the base weights (`W + scaling * B A`) and returns a plain model
    /// (every parameter trainable again): `save_pretrained` then writes a Hugging Face
    /// checkpoint. A model without adapters is returned unchanged.
    pub fn merge_adapters(self) -> Self {
        if !self.has_adapters() {
            return self;
        }
        let merged = Self {
            model: self.model.merge(),
            lm_head: self.lm_head,
        };
        merged.map(&mut Unfreeze)
    }

    /// Whether LoRA adapters are attached.
    pub fn has_adapters(&self) -> bool {
        self.model.has_adapters()
    }

    /// The LoRA config of the attached adapters.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.model.lora_config()
    }

    /// Number of adapter parameters (0 without adapters).
    pub fn num_adapter_params(&self) -> usize {
        self.model.num_adapter_params()
    }
}

impl<B: Backend> LlamaForSequenceClassification<B> {
    /// Attaches fresh LoRA adapters (see [`LlamaForCausalLM::with_lora`]) and freezes the
    /// decoder; the `score` head stays trainable (PEFT's `modules_to_save: ["score"]`).
    ///
    /// # Errors
    /// [`Error::InvalidLora`] for an invalid config or a model that already has adapters.
    pub fn with_lora(self, config: &LoraConfig, device: &B::Device) -> Result<Self> {
        self.model.check_can_attach(config)?;
        let mut frozen = self.no_grad();
        frozen.model = frozen.model.attach_with(config, |_, _, d_in, d_out| {
            Ok(config.init_adapter(d_in, d_out, device))
        })?;
        frozen.score.weight = frozen.score.weight.set_require_grad(true);
        tracing::info!(
            rank = config.rank,
            targets = ?config.targets,
            adapter_params = frozen.num_adapter_params(),
            "attached LoRA adapters (score head trainable)"
        );
        Ok(frozen)
    }

    /// The model without adapters (decoder tensors shared and frozen; the score head is the
    /// current, trained one).
    pub fn without_adapters(&self) -> Self {
        Self {
            model: self.model.strip_adapters(),
            score: self.score.clone(),
        }
    }

    /// Folds the adapters into the base weights and returns a plain model (every parameter
    /// trainable again); `save_pretrained` then writes a Hugging Face checkpoint.
    pub fn merge_adapters(self) -> Self {
        if !self.has_adapters() {
            return self;
        }
        let merged = Self {
            model: self.model.merge(),
            score: self.score,
        };
        merged.map(&mut Unfreeze)
    }

    /// Whether LoRA adapters are attached.
    pub fn has_adapters(&self) -> bool {
        self.model.has_adapters()
    }

    /// The LoRA config of the attached adapters.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.model.lora_config()
    }

    /// Number of adapter parameters (0 without adapters; the score head not included).
    pub fn num_adapter_params(&self) -> usize {
        self.model.num_adapter_params()
    }
}
