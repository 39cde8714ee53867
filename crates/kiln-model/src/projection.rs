//! [`Projection`]: a linear projection of a decoder layer (with a bias on Qwen2's q/k/v) and an
//! optional LoRA adapter.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};

use crate::linear::linear3;
use crate::lora::LoraAdapter;

/// `base(x)`, plus `scaling * B A dropout(x)` when a LoRA adapter is attached.
#[derive(Module, Debug)]
pub struct Projection<B: Backend> {
    /// The (pre-trained) weight, `[in, out]`; frozen while an adapter is trained.
    pub base: Linear<B>,
    /// The LoRA adapter, if any.
    pub lora: Option<LoraAdapter<B>>,
}

impl<B: Backend> Projection<B> {
    /// A projection without adapter.
    pub fn new(base: Linear<B>) -> Self {
        Self { base, lora: None }
    }

    /// `[in, out]` of the base weight.
    pub fn dims(&self) -> [usize; 2] {
        self.base.weight.dims()
    }

    /// The base projection as one `[batch * seq, in] x [in, out]` GEMM (see [`linear3`]), plus
    /// the adapter's update computed on the same flattened input. Without an adapter this is
    /// exactly [`linear3`]. With a bf16/f16 base and f32 adapters the update and the sum are
    /// computed in f32 and the result cast back to the base's dtype (PEFT's order).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, in]` -> `[batch, seq, out]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lora {
            None => linear3(&self.base, x),
            Some(lora) => {
                let [b, t, d] = x.dims();
                let x = x.reshape([b * t, d]);
                let base = self.base.forward(x.clone());
                let (dtype, adapter) = (base.dtype(), lora.lora_a.val().dtype());
                let y = if dtype == adapter {
                    base + lora.forward(x)
                } else {
                    // A half-precision base with f32 adapters, as PEFT runs it: the input is
                    // cast to the adapter's dtype, the sum is formed there and cast back.
                    let to = FloatDType::from(adapter);
                    (base.cast(to) + lora.forward(x.cast(to))).cast(FloatDType::from(dtype))
                };
                let out = y.dims()[1];
                y.reshape([b, t, out])
            }
        }
    }
}
