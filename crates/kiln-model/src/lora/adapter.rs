//! [`LoraAdapter`]: the trainable low-rank update `scaling * B A dropout(x)` of one projection.

use burn::module::{Module, Param};
use burn::nn::Dropout;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// A LoRA update of one `d_in -> d_out` projection, stored in burn's `[in, out]` convention
/// (PEFT's `lora_A.weight` is `[r, in]` = `lora_a^T`, `lora_B.weight` is `[out, r]` = `lora_b^T`).
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// `A^T`, `[d_in, r]`.
    pub lora_a: Param<Tensor<B, 2>>,
    /// `B^T`, `[r, d_out]`.
    pub lora_b: Param<Tensor<B, 2>>,
    /// `alpha / r` (or `alpha / sqrt(r)` with rsLoRA).
    pub scaling: f64,
    /// Dropout on the adapter's input (active only on autodiff backends, like `nn.Dropout` in
    /// training mode).
    pub dropout: Dropout,
}

impl<B: Backend> LoraAdapter<B> {
    /// Rank `r`.
    pub fn rank(&self) -> usize {
        self.lora_a.dims()[1]
    }

    /// The update `scaling * dropout(x) A^T B^T` (the scale is applied to the narrow `[n, r]`
    /// intermediate).
    ///
    /// # Shapes
    /// - `x`: `[n, d_in]` -> `[n, d_out]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let h = self.dropout.forward(x).matmul(self.lora_a.val());
        h.mul_scalar(self.scaling).matmul(self.lora_b.val())
    }

    /// The dense weight update `scaling * A^T B^T` in burn's layout (add it to `Linear::weight`).
    ///
    /// # Shapes
    /// - output: `[d_in, d_out]`
    pub fn delta_weight(&self) -> Tensor<B, 2> {
        self.lora_a
            .val()
            .mul_scalar(self.scaling)
            .matmul(self.lora_b.val())
    }
}
