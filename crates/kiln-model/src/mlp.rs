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
        let gate = silu(linear3(&self.gate_proj, x.clone()));
        linear3(&self.down_proj, gate * linear3(&self.up_proj, x))
    }
}
