//! Building modules from named weights: one construction path shared by random initialisation
//! and checkpoint loading, so HF names and layouts are defined in exactly one place.

use burn::module::Param;
use burn::nn::{Embedding, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};

use crate::attention::LlamaAttention;
use crate::config::DecoderConfig;
use crate::layer::LlamaDecoderLayer;
use crate::mlp::LlamaMlp;
use crate::model::LlamaModel;
use crate::projection::Projection;
use crate::rms_norm::LlamaRmsNorm;
use crate::rope::RotaryEmbedding;
use std::convert::Infallible;

/// A provider of tensors by Hugging Face name, in Hugging Face layout (Linear = `[out, in]`).
pub(crate) trait WeightSource<B: Backend> {
    /// Why a tensor cannot be had ([`Infallible`] for random initialisation, which therefore
    /// needs no error path).
    type Error;

    /// The tensor `name`, which must have shape `shape`.
    fn get<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<B, D>, Self::Error>;

    /// The HF `[d_out, d_in]` matrix `name` as a contiguous burn `[d_in, d_out]` tensor.
    fn get_transposed(
        &mut self,
        name: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<Tensor<B, 2>, Self::Error> {
        Ok(self.get(name, [d_out, d_in])?.transpose())
    }
}

/// Random initialisation: matrices `N(0, std)`, norm weights 1, biases 0.
///
/// With `seed: None` the values come from the backend's global RNG (`B::seed`). With
/// `Some(seed)` each tensor is drawn from its own stream, a function of the seed and the tensor's
/// Hugging Face name only: the same seed gives the same weights on every backend, whatever other
/// threads draw meanwhile (tests run in parallel threads that share the backend RNG).
pub(crate) struct RandomSource<'a, B: Backend> {
    pub std: f64,
    pub device: &'a B::Device,
    pub seed: Option<u64>,
}

impl<B: Backend> WeightSource<B> for RandomSource<'_, B> {
    type Error = Infallible;

    fn get<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<B, D>, Infallible> {
        Ok(match (D, self.seed) {
            // Biases start at 0, as transformers initialises them.
            (1, _) if name.ends_with(".bias") => Tensor::zeros(shape, self.device),
            (1, _) => Tensor::ones(shape, self.device),
            (_, None) => Tensor::random(shape, Distribution::Normal(0.0, self.std), self.device),
            (_, Some(seed)) => {
                let n = shape.iter().product();
                let values = seeded_normal(seed, name, n, self.std);
                Tensor::from_data(TensorData::new(values, shape), self.device)
            }
        })
    }

    fn get_transposed(
        &mut self,
        name: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<Tensor<B, 2>, Infallible> {
        self.get(name, [d_in, d_out])
    }
}

/// `n` values of `N(0, std)` from the stream of (`seed`, `name`): splitmix64 seeded by the seed
/// and an FNV-1a hash of the name, Box-Muller for the normal draws.
pub(crate) fn seeded_normal(seed: u64, name: &str, n: usize, std: f64) -> Vec<f32> {
    let mut state = name.bytes().fold(0xcbf2_9ce4_8422_2325u64 ^ seed, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    // A uniform in (0, 1]: 53 random bits, never 0 (ln(0) would be -inf).
    let mut uniform = move || ((next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let (u1, u2) = (uniform(), uniform());
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let theta = std::f64::consts::TAU * u2;
        out.push((r * theta.cos()) as f32);
        out.push((r * theta.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// A bias-free Linear from an HF `[out, in]` weight (transposed to burn's `[in, out]`).
pub(crate) fn linear<B: Backend, S: WeightSource<B>>(
    src: &mut S,
    name: &str,
    d_in: usize,
    d_out: usize,
) -> Result<Linear<B>, S::Error> {
    let w = src.get_transposed(&format!("{name}.weight"), d_in, d_out)?;
    Ok(Linear {
        weight: Param::from_tensor(w),
        bias: None,
    })
}

/// A decoder projection; with `bias`, its `[d_out]` bias `{name}.bias` too (Qwen2's q/k/v).
fn proj<B: Backend, S: WeightSource<B>>(
    src: &mut S,
    name: &str,
    d_in: usize,
    d_out: usize,
    bias: bool,
) -> Result<Projection<B>, S::Error> {
    let mut base = linear(src, name, d_in, d_out)?;
    if bias {
        base.bias = Some(Param::from_tensor(
            src.get(&format!("{name}.bias"), [d_out])?,
        ));
    }
    Ok(Projection::new(base))
}

fn norm<B: Backend, S: WeightSource<B>>(
    src: &mut S,
    name: &str,
    c: &DecoderConfig,
) -> Result<LlamaRmsNorm<B>, S::Error> {
    Ok(LlamaRmsNorm::new(
        src.get(&format!("{name}.weight"), [c.hidden_size])?,
        c.rms_norm_eps,
    ))
}

/// Builds the decoder stack (`model.*`).
pub(crate) fn build_model<B: Backend, S: WeightSource<B>>(
    c: &DecoderConfig,
    src: &mut S,
) -> Result<LlamaModel<B>, S::Error> {
    let d = c.hidden_size;
    let (q_dim, kv_dim) = (
        c.num_attention_heads * c.head_dim,
        c.num_key_value_heads * c.head_dim,
    );
    let qkv_bias = c.model_type.qkv_bias();
    let embed = src.get("model.embed_tokens.weight", [c.vocab_size, d])?;
    // Not `with_capacity(num_hidden_layers)`: the count comes from config.json, and a huge one
    // must fail at the first missing layer, not abort on an impossible allocation.
    let mut layers = Vec::new();
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let self_attn = LlamaAttention {
            q_proj: proj(src, &format!("{p}.self_attn.q_proj"), d, q_dim, qkv_bias)?,
            k_proj: proj(src, &format!("{p}.self_attn.k_proj"), d, kv_dim, qkv_bias)?,
            v_proj: proj(src, &format!("{p}.self_attn.v_proj"), d, kv_dim, qkv_bias)?,
            o_proj: proj(src, &format!("{p}.self_attn.o_proj"), q_dim, d, false)?,
            num_heads: c.num_attention_heads,
            num_kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
        };
        let mlp = LlamaMlp {
            gate_proj: proj(
                src,
                &format!("{p}.mlp.gate_proj"),
                d,
                c.intermediate_size,
                false,
            )?,
            up_proj: proj(
                src,
                &format!("{p}.mlp.up_proj"),
                d,
                c.intermediate_size,
                false,
            )?,
            down_proj: proj(
                src,
                &format!("{p}.mlp.down_proj"),
                c.intermediate_size,
                d,
                false,
            )?,
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

#[cfg(test)]
mod tests {
    use super::seeded_normal;

    #[test]
    fn seeded_streams_are_reproducible_distinct_and_normal() {
        let a = seeded_normal(7, "model.layers.0.self_attn.q_proj.weight", 20_000, 0.5);
        assert_eq!(
            a,
            seeded_normal(7, "model.layers.0.self_attn.q_proj.weight", 20_000, 0.5)
        );
        assert_ne!(
            a[..8],
            seeded_normal(8, "model.layers.0.self_attn.q_proj.weight", 8, 0.5)[..]
        );
        assert_ne!(
            a[..8],
            seeded_normal(7, "model.layers.0.self_attn.k_proj.weight", 8, 0.5)[..]
        );
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.02, "{mean}");
        assert!((var.sqrt() - 0.5).abs() < 0.02, "{var}");
        assert!(a.iter().all(|v| v.is_finite()));
    }
}
