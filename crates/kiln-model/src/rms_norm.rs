//! RMSNorm as Hugging Face Llama computes it: in f32, `x * rsqrt(mean(x^2) + eps)`, then the weight.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor};

/// Root-mean-square layer norm with a learned per-channel weight (HF name `*.weight`).
#[derive(Module, Debug)]
pub struct LlamaRmsNorm<B: Backend> {
    /// Per-channel scale, shape `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Epsilon added to the mean square.
    pub eps: f64,
}

impl<B: Backend> LlamaRmsNorm<B> {
    /// Builds the norm from a weight tensor.
    pub fn new(weight: Tensor<B, 1>, eps: f64) -> Self {
        Self {
            weight: Param::from_tensor(weight),
            eps,
        }
    }

    /// Normalises over the last dimension (statistics in f32, like HF, whatever the input dtype).
    ///
    /// # Shapes
    /// - `x`: `[..., hidden]` -> `[..., hidden]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let x32 = if dtype == DType::F32 {
            x
        } else {
            x.cast(FloatDType::F32)
        };
        let var = (x32.clone() * x32.clone()).mean_dim(D - 1);
        let normed = x32 / var.add_scalar(self.eps).sqrt();
        let normed = if dtype == DType::F32 {
            normed
        } else {
            normed.cast(dtype)
        };
        normed * self.weight.val().unsqueeze::<D>()
    }
}
