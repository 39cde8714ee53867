//! SwiGLU feed-forward block of Llama: `down(silu(gate(x)) * up(x))`.

use burn::module::Module;
use burn::nn::Linear;

use crate::linear::linear3;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;

/// The Llama MLP (HF names `mlp.{gate,up,down}_proj`, no biases).
#[derive(Module, Debug)]
pub struct LlamaMlp<B: Backend> {
    /// `[hidden] -> [intermediate]`, gated by SiLU.
    pub gate_proj: Linear<B>,
    /// `[hidden] -> [intermediate]`.
    pub up_proj: Linear<B>,
    /// `[intermediate] -> [hidden]`.
    pub down_proj: Linear<B>,
}

impl<B: Backend> LlamaMlp<B> {
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = silu_fast(linear3(&self.gate_proj, x.clone()));
        linear3(&self.down_proj, gate * linear3(&self.up_proj, x))
    }
}

/// SiLU. Without autodiff it is computed as `x / (1 + exp(-x))` (PyTorch's CPU formula): four
/// branch-free element-wise ops, ~2x faster on flex than burn's `x * sigmoid(x)`, whose
/// sigmoid branches on the sign. Under autodiff burn's `silu` is kept: the quotient's backward
/// yields `0 * inf = NaN` where `exp(-x)` overflows (`x < -88` in f32).
fn silu_fast<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if B::ad_enabled(&x.device()) {
        silu(x)
    } else {
        x.clone().div(x.neg().exp().add_scalar(1.0))
    }
}
