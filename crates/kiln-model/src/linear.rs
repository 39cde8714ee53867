//! Applying a `Linear` to `[batch, seq, in]` activations as one 2-D matmul.
//!
//! burn's `Linear::forward` on a rank-3 input broadcasts the weight over the batch, which on CPU
//! backends runs `batch` separate small matmuls; in decoding (`seq = 1`) these are memory-bound
//! vector-matrix products that re-read the whole weight per row. Flattening to `[batch * seq, in]`
//! first gives a single GEMM with the same result (and the same gradients).

use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// `linear(x)` computed as one `[batch * seq, in] x [in, out]` matmul.
///
/// # Shapes
/// - `x`: `[batch, seq, in]` -> `[batch, seq, out]`
pub fn linear3<B: Backend>(linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, t, d] = x.dims();
    let y = linear.forward(x.reshape([b * t, d]));
    let out = y.dims()[1];
    y.reshape([b, t, out])
}
