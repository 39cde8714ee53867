//! Rotary position embedding in Hugging Face's rotate-half convention, with Llama-3 frequency
//! scaling (`rope_type: "llama3"`). Angles are computed in f32 like HF.

use std::f64::consts::PI;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData};

use crate::config::{DecoderConfig, Llama3RopeScaling};

/// Inverse frequencies of a rotary embedding (`head_dim / 2` values).
#[derive(Debug, Clone, PartialEq)]
pub struct RotaryEmbedding {
    /// `1 / theta^(2i / head_dim)`, after Llama-3 scaling when configured.
    pub inv_freq: Vec<f32>,
}

/// Llama-3 scaling of inverse frequencies, as in HF `_compute_llama3_parameters` (f32 arithmetic).
pub fn llama3_scale(inv_freq: &[f32], s: &Llama3RopeScaling) -> Vec<f32> {
    let factor = s.factor as f32;
    let low = s.low_freq_factor as f32;
    let high = s.high_freq_factor as f32;
    let old_ctx = s.original_max_position_embeddings as f32;
    let low_freq_wavelen = old_ctx / low;
    let high_freq_wavelen = old_ctx / high;
    inv_freq
        .iter()
        .map(|&f| {
            let wavelen = 2.0 * PI as f32 / f;
            let scaled = if wavelen > low_freq_wavelen {
                f / factor
            } else {
                f
            };
            // HF: !(w < high) & !(w > low); wavelengths are finite and positive.
            let is_medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
            if is_medium {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                (1.0 - smooth) * scaled / factor + smooth * scaled
            } else {
                scaled
            }
        })
        .collect()
}

impl RotaryEmbedding {
    /// Frequencies for `config` (`rope_theta`, `head_dim`, optional llama3 scaling).
    pub fn new(config: &DecoderConfig) -> Self {
        let dim = config.head_dim;
        let base = config.rope_theta as f32;
        let inv_freq: Vec<f32> = (0..dim)
            .step_by(2)
            .map(|i| 1.0 / base.powf(i as f32 / dim as f32))
            .collect();
        let inv_freq = match &config.rope_scaling {
            Some(s) => llama3_scale(&inv_freq, s),
            None => inv_freq,
        };
        Self { inv_freq }
    }

    /// Cosine and sign-folded sine tables for the given positions in the dtype `dtype`, for one
    /// head (see [`RopeTables::repeat_heads`]).
    ///
    /// # Shapes
    /// - `positions`: `[batch, seq]` -> tables `[batch, seq, 1, head_dim]`
    pub fn tables<B: Backend>(&self, positions: Tensor<B, 2, Int>, dtype: DType) -> RopeTables<B> {
        let device = positions.device();
        let [b, t] = positions.dims();
        let half = self.inv_freq.len();
        let inv = Tensor::<B, 1>::from_data(
            TensorData::new(self.inv_freq.clone(), [half]),
            (&device, DType::F32),
        )
        .reshape([1, 1, half]);
        let pos: Tensor<B, 3> = positions.cast(FloatDType::F32).reshape([b, t, 1]);
        let freqs = pos * inv;
        let (cos, sin) = (freqs.clone().cos(), freqs.sin());
        // HF: emb = cat(freqs, freqs); rotate_half(x) * sin = cat(-x2, x1) * cat(s, s)
        //   = cat(x2, x1) * cat(-s, s): the sign is folded into the table (exact in IEEE).
        let cos = Tensor::cat(vec![cos.clone(), cos], 2);
        let sin = Tensor::cat(vec![sin.clone().neg(), sin], 2);
        let (cos, sin) = if dtype == DType::F32 {
            (cos, sin)
        } else {
            (cos.cast(dtype), sin.cast(dtype))
        };
        RopeTables {
            cos: cos.unsqueeze_dim(2),
            sin_signed: sin.unsqueeze_dim(2),
        }
    }
}

/// Rotary tables for one forward pass, shared by every layer.
#[derive(Debug, Clone)]
pub struct RopeTables<B: Backend> {
    /// `cat(cos, cos)` of the angles, `[batch, seq, heads, head_dim]`.
    pub cos: Tensor<B, 4>,
    /// `cat(-sin, sin)` of the angles, `[batch, seq, heads, head_dim]`.
    pub sin_signed: Tensor<B, 4>,
}

impl<B: Backend> RopeTables<B> {
    /// One-head tables copied out to `heads` heads. Materialised, not a broadcast view:
    /// same-shape element-wise products are what CPU backends vectorise, while a stride-0 head
    /// axis falls back to a scalar strided loop (~15x slower on flex).
    ///
    /// # Shapes
    /// - `[batch, seq, 1, head_dim]` -> `[batch, seq, heads, head_dim]`
    pub fn repeat_heads(&self, heads: usize) -> Self {
        Self {
            cos: self.cos.clone().repeat_dim(2, heads),
            sin_signed: self.sin_signed.clone().repeat_dim(2, heads),
        }
    }
}

/// `cat(x2, x1)` over the last dimension, where `x1`/`x2` are its halves.
fn swap_halves<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let hd = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, hd / 2);
    let x2 = x.narrow(3, hd / 2, hd / 2);
    Tensor::cat(vec![x2, x1], 3)
}

/// Applies HF's rotation `x * cos + rotate_half(x) * sin`, computed as
/// `x * cos + cat(x2, x1) * cat(-sin, sin)` (bit-identical).
///
/// # Shapes
/// - `x`: `[batch, seq, heads, head_dim]`; tables: the same shape -> like `x`
pub fn apply_rotary<B: Backend>(x: Tensor<B, 4>, tables: &RopeTables<B>) -> Tensor<B, 4> {
    x.clone() * tables.cos.clone() + swap_halves(x) * tables.sin_signed.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn llama3_scaling_bands() {
        let s = Llama3RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        };
        // wavelengths: 2pi/1 (high freq: kept), 2pi/1e-4 ~ 62832 > 8192 (low: / 8),
        // 2pi/2e-3 ~ 3142 (medium: smoothed between f/8 and f).
        let out = llama3_scale(&[1.0, 1e-4, 2e-3], &s);
        assert_eq!(out[0], 1.0);
        assert!((out[1] - 1.25e-5).abs() < 1e-9);
        let smooth = (8192.0 / (2.0 * std::f32::consts::PI / 2e-3) - 1.0) / 3.0;
        let want = (1.0 - smooth) * 2e-3 / 8.0 + smooth * 2e-3;
        assert!((out[2] - want).abs() < 1e-8 && out[2] > 2.5e-4 && out[2] < 2e-3);
    }

    #[test]
    fn rotation_preserves_norm_and_is_identity_at_zero() {
        let cfg = DecoderConfig::tiny(32, 64);
        let rope = RotaryEmbedding::new(&cfg);
        let device = Default::default();
        let pos = Tensor::<Flex, 2, Int>::from_data([[0, 5, 40]], &device);
        let tables = rope.tables(pos, DType::F32).repeat_heads(2);
        assert_eq!(tables.cos.dims(), [1, 3, 2, 16]);
        let x =
            Tensor::<Flex, 4>::random([1, 3, 2, 16], burn::tensor::Distribution::Default, &device);
        let y = apply_rotary(x.clone(), &tables);
        let norm = |t: Tensor<Flex, 4>| {
            (t.clone() * t)
                .sum_dim(3)
                .into_data()
                .to_vec::<f32>()
                .unwrap()
        };
        for (a, b) in norm(x.clone()).iter().zip(norm(y.clone())) {
            assert!((a - b).abs() < 1e-4);
        }
        let x0 = x
            .clone()
            .narrow(1, 0, 1)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let y0 = y
            .clone()
            .narrow(1, 0, 1)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(x0, y0);

        // Bit-identical to HF's formula `x * cos + cat(-x2, x1) * sin` with emb = cat(f, f).
        let half = 8;
        let f = (Tensor::<Flex, 1, Int>::from_data([0, 5, 40], &device)
            .float()
            .reshape([1, 3, 1, 1])
            * Tensor::<Flex, 1>::from_floats(rope.inv_freq.as_slice(), &device)
                .reshape([1, 1, 1, half]))
        .repeat_dim(2, 2);
        let emb = Tensor::cat(vec![f.clone(), f], 3);
        let (x1, x2) = (
            x.clone().narrow(3, 0, half),
            x.clone().narrow(3, half, half),
        );
        let hf = x.clone() * emb.clone().cos() + Tensor::cat(vec![x2.neg(), x1], 3) * emb.sin();
        assert_eq!(
            hf.into_data().to_vec::<f32>().unwrap(),
            y.into_data().to_vec::<f32>().unwrap()
        );
    }
}
