//! Rotary position embedding in Hugging Face's rotate-half convention, with Llama-3 frequency
//! scaling (`rope_type: "llama3"`). Angles are computed in f32 like HF.

use std::f64::consts::PI;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData};

use crate::config::{Llama3RopeScaling, LlamaConfig};

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
    pub fn new(config: &LlamaConfig) -> Self {
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

    /// Cosine and sine tables for the given positions, in the dtype `dtype`.
    ///
    /// # Shapes
    /// - `positions`: `[batch, seq]` -> `(cos, sin)`, each `[batch, 1, seq, head_dim]`
    pub fn cos_sin<B: Backend>(
        &self,
        positions: Tensor<B, 2, Int>,
        dtype: DType,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
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
        let emb = Tensor::cat(vec![freqs.clone(), freqs], 2);
        let (cos, sin) = (emb.clone().cos(), emb.sin());
        let (cos, sin) = if dtype == DType::F32 {
            (cos, sin)
        } else {
            (cos.cast(dtype), sin.cast(dtype))
        };
        (cos.unsqueeze_dim(1), sin.unsqueeze_dim(1))
    }
}

/// `cat(-x2, x1)` over the last dimension, where `x1`/`x2` are its halves.
fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let hd = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, hd / 2);
    let x2 = x.narrow(3, hd / 2, hd / 2);
    Tensor::cat(vec![x2.neg(), x1], 3)
}

/// Applies the rotation: `x * cos + rotate_half(x) * sin`.
///
/// # Shapes
/// - `x`: `[batch, heads, seq, head_dim]`; `cos`, `sin`: `[batch, 1, seq, head_dim]` -> like `x`
pub fn apply_rotary<B: Backend>(
    x: Tensor<B, 4>,
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
) -> Tensor<B, 4> {
    x.clone() * cos + rotate_half(x) * sin
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
        let cfg = LlamaConfig::tiny(32, 64);
        let rope = RotaryEmbedding::new(&cfg);
        let device = Default::default();
        let pos = Tensor::<Flex, 2, Int>::from_data([[0, 5, 40]], &device);
        let (cos, sin) = rope.cos_sin(pos, DType::F32);
        assert_eq!(cos.dims(), [1, 1, 3, 16]);
        let x =
            Tensor::<Flex, 4>::random([1, 2, 3, 16], burn::tensor::Distribution::Default, &device);
        let y = apply_rotary(x.clone(), cos, sin);
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
        let x0 = x.narrow(2, 0, 1).into_data().to_vec::<f32>().unwrap();
        let y0 = y.narrow(2, 0, 1).into_data().to_vec::<f32>().unwrap();
        assert_eq!(x0, y0);
    }
}
