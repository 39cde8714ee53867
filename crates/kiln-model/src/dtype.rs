//! The float dtype of a model's weights: reading it, and casting a model (e.g. a randomly
//! initialised one) to bf16 or f16. LoRA adapters keep their own dtype (f32), like PEFT's.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor};

use crate::causal_lm::LlamaForCausalLM;
use crate::checkpoint::check_backend_dtype;
use crate::classifier::LlamaForSequenceClassification;
use crate::error::Result;
use crate::lora::LoraTarget;
use crate::model::LlamaModel;

/// Casts every float parameter it visits, keeping each one's require-grad flag.
struct CastParams(FloatDType);

impl<B: Backend> ModuleMapper<B> for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let dtype = self.0;
        param.map(|t| {
            if t.dtype() == DType::from(dtype) {
                return t;
            }
            let require_grad = t.is_require_grad();
            t.cast(dtype).detach().set_require_grad(require_grad)
        })
    }
}

impl<B: Backend> LlamaModel<B> {
    /// The dtype of the weights (that of `embed_tokens`).
    pub fn dtype(&self) -> DType {
        self.embed_tokens.weight.val().dtype()
    }

    /// The decoder with its base weights in `dtype`, after checking that the backend can
    /// compute in it.
    fn cast_base(mut self, dtype: FloatDType) -> Result<Self> {
        let device = self.embed_tokens.weight.val().device();
        check_backend_dtype::<B>(&device, DType::from(dtype))?;
        let m = &mut CastParams(dtype);
        self.embed_tokens = self.embed_tokens.map(m);
        self.norm = self.norm.map(m);
        for layer in &mut self.layers {
            layer.input_layernorm = layer.input_layernorm.clone().map(m);
            layer.post_attention_layernorm = layer.post_attention_layernorm.clone().map(m);
            for t in LoraTarget::ALL {
                let p = layer.projection_mut(t);
                p.base = p.base.clone().map(m);
            }
        }
        Ok(self)
    }
}

impl<B: Backend> LlamaForCausalLM<B> {
    /// The dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.model.dtype()
    }

    /// The model with its base weights (embeddings, norms, projections, LM head) in `dtype`;
    /// attached LoRA adapters are left as they are. Loading with
    /// [`LoadOptions`](crate::LoadOptions) avoids the f32 copy of a half-precision checkpoint.
    ///
    /// # Errors
    /// [`Error::UnsupportedBackendDtype`](crate::Error::UnsupportedBackendDtype) when the backend
    /// cannot compute in `dtype`.
    pub fn into_dtype(self, dtype: FloatDType) -> Result<Self> {
        Ok(Self {
            model: self.model.cast_base(dtype)?,
            lm_head: self.lm_head.map(|h| h.map(&mut CastParams(dtype))),
        })
    }
}

impl<B: Backend> LlamaForSequenceClassification<B> {
    /// The dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.model.dtype()
    }

    /// The model with its base weights and score head in `dtype` (adapters unchanged).
    ///
    /// # Errors
    /// [`Error::UnsupportedBackendDtype`](crate::Error::UnsupportedBackendDtype) when the backend
    /// cannot compute in `dtype`.
    pub fn into_dtype(self, dtype: FloatDType) -> Result<Self> {
        Ok(Self {
            model: self.model.cast_base(dtype)?,
            score: self.score.map(&mut CastParams(dtype)),
        })
    }
}
