//! SwiGLU feed-forward block of Llama: `down(silu(gate(x)) * up(x))`.

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor};

use crate::projection::Projection;

/// The Llama MLP (HF names `mlp.{gate,up,down}_proj`, no biases); each projection may carry a
/// LoRA adapter.
#[derive(Module, Debug)]
pub struct LlamaMlp<B: Backend> {
    /// `[hidden] -> [intermediate]`, gated by SiLU.
    pub gate_proj: Projection<B>,
    /// `[hidden] -> [intermediate]`.
    pub up_proj: Projection<B>,
    /// `[intermediate] -> [hidden]`.
    pub down_proj: Projection<B>,
}

impl<B: Backend> LlamaMlp<B> {
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = silu_fast(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

/// SiLU. Without autodiff it is computed as `x / (1 + exp(-x))` (PyTorch's CPU formula): four
/// branch-free element-wise ops, ~2x faster on flex than burn's `x * sigmoid(x)`, whose
/// sigmoid branches on the sign. Under autodiff burn's `silu` is kept: the quotient's backward
/// yields `0 * inf = NaN` where `exp(-x)` overflows (`x < -88` in f32).
///
/// A bf16/f16 input is computed in f32 and rounded once, as PyTorch's CPU and CUDA kernels do.
fn silu_fast<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let dtype = x.dtype();
    if matches!(dtype, DType::F16 | DType::BF16) {
        return silu_fast(x.cast(FloatDType::F32)).cast(FloatDType::from(dtype));
    }
    if B::ad_enabled(&x.device()) {
        silu(x)
    } else {
        x.clone().div(x.neg().exp().add_scalar(1.0))
    }
}
