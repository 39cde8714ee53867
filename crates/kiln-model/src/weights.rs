//! Building modules from named weights: one construction path shared by random initialisation
//! and checkpoint loading, so HF names and layouts are defined in exactly one place.

use burn::module::Param;
use burn::nn::{Embedding, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

use crate::attention::LlamaAttention;
use crate::config::LlamaConfig;
use crate::error::Result;
use crate::layer::LlamaDecoderLayer;
use crate::mlp::LlamaMlp;
use crate::model::LlamaModel;
use crate::projection::Projection;
use crate::rms_norm::LlamaRmsNorm;
use crate::rope::RotaryEmbedding;

/// A provider of tensors by Hugging Face name, in Hugging Face layout (Linear = `[out, in]`).
pub(crate) trait WeightSource<B: Backend> {
    /// The tensor `name`, which must have shape `shape`.
    fn get<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Tensor<B, D>>;

    /// The HF `[d_out, d_in]` matrix `name` as a contiguous burn `[d_in, d_out]` tensor.
    fn get_transposed(&mut self, name: &str, d_in: usize, d_out: usize) -> Result<Tensor<B, 2>> {
        Ok(self.get(name, [d_out, d_in])?.transpose())
    }
}

/// Random initialisation: matrices `N(0, std)`, norm weights 1.
pub(crate) struct RandomSource<'a, B: Backend> {
    pub std: f64,
    pub device: &'a B::Device,
}

impl<B: Backend> WeightSource<B> for RandomSource<'_, B> {
    fn get<const D: usize>(&mut self, _name: &str, shape: [usize; D]) -> Result<Tensor<B, D>> {
        Ok(if D == 1 {
            Tensor::ones(shape, self.device)
        } else {
            Tensor::random(shape, Distribution::Normal(0.0, self.std), self.device)
        })
    }

    fn get_transposed(&mut self, name: &str, d_in: usize, d_out: usize) -> Result<Tensor<B, 2>> {
        self.get(name, [d_in, d_out])
    }
}

/// A bias-free Linear from an HF `[out, in]` weight (transposed to burn's `[in, out]`).
pub(crate) fn linear<B: Backend, S: WeightSource<B>>(
    src: &mut S,
    name: &str,
    d_in: usize,
    d_out: usize,
) -> Result<Linear<B>> {
    let w = src.get_transposed(&format!("{name}.weight"), d_in, d_out)?;
    Ok(Linear {
        weight: Param::from_tensor(w),
        bias: None,
    })
}

fn proj<B: Backend, S: WeightSource<B>>(
    src: &mut S,
    name: &str,
    d_in: usize,
    d_out: usize,
) -> Result<Projection<B>> {
    Ok(Projection::new(linear(src, name, d_in, d_out)?))
}

fn norm<B: Backend, S: WeightSource<B>>(
    src: &mut S,
    name: &str,
    c: &LlamaConfig,
) -> Result<LlamaRmsNorm<B>> {
    Ok(LlamaRmsNorm::new(
        src.get(&format!("{name}.weight"), [c.hidden_size])?,
        c.rms_norm_eps,
    ))
}

/// Builds the decoder stack (`model.*`).
pub(crate) fn build_model<B: Backend, S: WeightSource<B>>(
    c: &LlamaConfig,
    src: &mut S,
) -> Result<LlamaModel<B>> {
    let d = c.hidden_size;
    let (q_dim, kv_dim) = (
        c.num_attention_heads * c.head_dim,
        c.num_key_value_heads * c.head_dim,
    );
    let embed = src.get("model.embed_tokens.weight", [c.vocab_size, d])?;
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let self_attn = LlamaAttention {
            q_proj: proj(src, &format!("{p}.self_attn.q_proj"), d, q_dim)?,
            k_proj: proj(src, &format!("{p}.self_attn.k_proj"), d, kv_dim)?,
            v_proj: proj(src, &format!("{p}.self_attn.v_proj"), d, kv_dim)?,
            o_proj: proj(src, &format!("{p}.self_attn.o_proj"), q_dim, d)?,
            num_heads: c.num_attention_heads,
            num_kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
        };
        let mlp = LlamaMlp {
            gate_proj: proj(src, &format!("{p}.mlp.gate_proj"), d, c.intermediate_size)?,
            up_proj: proj(src, &format!("{p}.mlp.up_proj"), d, c.intermediate_size)?,
            down_proj: proj(src, &format!("{p}.mlp.down_proj"), c.intermediate_size, d)?,
        };
        layers.push(LlamaDecoderLayer {
            input_layernorm: norm(src, &format!("{p}.input_layernorm"), c)?,
            self_attn,
            post_attention_layernorm: norm(src, &format!("{p}.post_attention_layernorm"), c)?,
            mlp,
        });
    }
    Ok(LlamaModel {
        embed_tokens: Embedding {
            weight: Param::from_tensor(embed),
        },
        layers,
        norm: norm(src, "model.norm", c)?,
        rope: RotaryEmbedding::new(c),
        config: c.clone(),
        lora: None,
    })
}
