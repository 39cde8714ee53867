//! SwiGLU feed-forward block of Llama: `down(silu(gate(x)) * up(x))`.

use burn::module::Module;
use burn::nn::Linear;
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
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}
