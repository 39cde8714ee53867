//! [`Projection`]: a bias-free linear projection of a decoder layer with an optional LoRA adapter.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

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
    /// exactly [`linear3`].
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, in]` -> `[batch, seq, out]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lora {
            None => linear3(&self.base, x),
            Some(lora) => {
                let [b, t, d] = x.dims();
                let x = x.reshape([b * t, d]);
                let y = self.base.forward(x.clone()) + lora.forward(x);
                let out = y.dims()[1];
                y.reshape([b, t, out])
            }
        }
    }
}
