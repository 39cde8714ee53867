//! One pre-norm Llama decoder layer: attention and SwiGLU MLP, each with a residual connection.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};

use crate::attention::LlamaAttention;
use crate::cache::KvCache;
use crate::lora::LoraTarget;
use crate::mlp::LlamaMlp;
use crate::projection::Projection;
use crate::rms_norm::LlamaRmsNorm;
use crate::rope::RopeTables;

/// A decoder layer (HF `model.layers.N`).
#[derive(Module, Debug)]
pub struct LlamaDecoderLayer<B: Backend> {
    /// `input_layernorm`.
    pub input_layernorm: LlamaRmsNorm<B>,
    /// `self_attn`.
    pub self_attn: LlamaAttention<B>,
    /// `post_attention_layernorm`.
    pub post_attention_layernorm: LlamaRmsNorm<B>,
    /// `mlp`.
    pub mlp: LlamaMlp<B>,
}

impl<B: Backend> LlamaDecoderLayer<B> {
    /// `h = x + attn(norm(x)); h + mlp(norm(h))`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`; `rope`: query and key tables (see
    ///   [`LlamaAttention::forward`]); `mask`: `[batch, 1, seq, cached + seq]`
    ///   -> `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: (&RopeTables<B>, &RopeTables<B>),
        mask: Tensor<B, 4, Bool>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3> {
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), rope, mask, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }

    /// The projection `target` of this layer.
    pub fn projection(&self, target: LoraTarget) -> &Projection<B> {
        match target {
            LoraTarget::Q => &self.self_attn.q_proj,
            LoraTarget::K => &self.self_attn.k_proj,
            LoraTarget::V => &self.self_attn.v_proj,
            LoraTarget::O => &self.self_attn.o_proj,
            LoraTarget::Gate => &self.mlp.gate_proj,
            LoraTarget::Up => &self.mlp.up_proj,
            LoraTarget::Down => &self.mlp.down_proj,
        }
    }

    /// The projection `target` of this layer, mutably.
    pub fn projection_mut(&mut self, target: LoraTarget) -> &mut Projection<B> {
        match target {
            LoraTarget::Q => &mut self.self_attn.q_proj,
            LoraTarget::K => &mut self.self_attn.k_proj,
            LoraTarget::V => &mut self.self_attn.v_proj,
            LoraTarget::O => &mut self.self_attn.o_proj,
            LoraTarget::Gate => &mut self.mlp.gate_proj,
            LoraTarget::Up => &mut self.mlp.up_proj,
            LoraTarget::Down => &mut self.mlp.down_proj,
        }
    }
}
