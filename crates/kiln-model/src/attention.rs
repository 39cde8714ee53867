//! Grouped-query self-attention with rotate-half RoPE and an optional KV cache.

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, ElementConversion, FloatDType, Tensor, TensorData};
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::cache::KvCache;
use crate::projection::Projection;
use crate::rope::{RopeTables, apply_rotary};

/// Llama self-attention (HF names `self_attn.{q,k,v,o}_proj`, no biases); each projection may
/// carry a LoRA adapter.
#[derive(Module, Debug)]
pub struct LlamaAttention<B: Backend> {
    /// `[hidden] -> [num_heads * head_dim]`.
    pub q_proj: Projection<B>,
    /// `[hidden] -> [num_kv_heads * head_dim]`.
    pub k_proj: Projection<B>,
    /// `[hidden] -> [num_kv_heads * head_dim]`.
    pub v_proj: Projection<B>,
    /// `[num_heads * head_dim] -> [hidden]`.
    pub o_proj: Projection<B>,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads.
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl<B: Backend> LlamaAttention<B> {
    /// Attention over the new tokens `x` and, when `cache` is given, the cached keys/values of
    /// layer `layer` (which are then extended with this step's keys/values).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
    /// - `rope`: tables for the query heads and the key heads, `[batch, seq, heads, head_dim]`
    /// - `mask`: `[batch, 1, seq, cached + seq]`, `true` = masked out
    /// - output: `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: (&RopeTables<B>, &RopeTables<B>),
        mask: Tensor<B, 4, Bool>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        // RoPE is applied in the projections' own `[b, t, heads, d]` layout (contiguous, the
        // same shape as the tables), then heads move ahead of time.
        let heads = |y: Tensor<B, 3>, heads: usize| y.reshape([b, t, heads, hd]);
        let q = apply_rotary(heads(self.q_proj.forward(x.clone()), nh), rope.0);
        let k = apply_rotary(heads(self.k_proj.forward(x.clone()), nkv), rope.1);
        let half = matches!(q.dtype(), DType::F16 | DType::BF16);
        let autodiff = B::ad_enabled(&q.device());
        // Fused kernels may turn a row of NaN scores into zeros (see `non_finite_queries`);
        // autodiff backends decompose attention, where a NaN score stays NaN.
        let non_finite = (!autodiff).then(|| non_finite_queries(&q, &k));
        let q = swap_middle(q);
        let k = swap_middle(k);
        let v = swap_middle(heads(self.v_proj.forward(x), nkv));
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, k, v),
            None => (k, v),
        };
        let len = k.dims()[2];
        // Grouped-query attention without copying K/V: query heads `g * n_rep + r` share KV head
        // `g`, so the queries are regrouped to `[b, kv_heads, n_rep * t, d]` (rows `r * t + i`)
        // and the mask's query rows repeated to match. Each row's softmax is unchanged.
        let n_rep = nh / nkv;
        let q = q.reshape([b, nkv, n_rep * t, hd]);
        let mask = mask.repeat_dim(2, n_rep).expand([b, nkv, n_rep * t, len]);
        // softmax(q k^T / sqrt(head_dim) masked) v; backends may use a fused kernel (autodiff
        // backends decompose it into differentiable ops, in the inputs' dtype: for bf16/f16 the
        // scores and softmax are then taken in f32, like HF's eager attention).
        let out = if half && autodiff {
            eager_attention_f32_softmax(q, k, v, mask)
        } else {
            let mask = backend_mask_convention(mask);
            attention(q, k, v, Some(mask), None, AttentionModuleOptions::default())
        };
        let out = swap_middle(out.reshape([b, nh, t, hd])).reshape([b, t, nh * hd]);
        let out = match non_finite {
            Some(rows) => out.mask_fill(rows.expand([b, t, nh * hd]), f32::NAN),
            None => out,
        };
        self.o_proj.forward(out)
    }
}

/// `[b, t, 1]`: `true` where query `t` of row `b`, or any of this step's keys of row `b`, holds a
/// NaN or an infinity.
///
/// Why: a fused CPU kernel (burn-flex 0.21's naive and flash attention) takes a row's maximum
/// score with `>` comparisons, which skip NaN; a row whose scores are all NaN (a NaN query, or
/// NaN keys for every visible position) then looks "fully masked" and its output is set to
/// zero. A NaN weight in `q_proj` or `k_proj` thus gave finite, plausible logits. PyTorch
/// propagates it (eager and SDPA attention give NaN), so the rows flagged here are set to NaN
/// after the kernel, which makes the non-finite-logits check and training's NaN stop see them.
/// Keys cached by earlier steps were checked when they were new (a non-finite key then made
/// that step's logits non-finite). Cost: one pass over this step's queries and keys.
///
/// # Shapes
/// - `q`: `[b, t, heads, head_dim]`, `k`: `[b, t, kv_heads, head_dim]` -> `[b, t, 1]`
fn non_finite_queries<B: Backend>(q: &Tensor<B, 4>, k: &Tensor<B, 4>) -> Tensor<B, 3, Bool> {
    let [b, t, h, d] = q.dims();
    let [_, tk, hk, dk] = k.dims();
    let q_bad = q
        .clone()
        .reshape([b, t, h * d])
        .is_finite()
        .bool_not()
        .any_dim(2);
    let k_bad = k
        .clone()
        .reshape([b, 1, tk * hk * dk])
        .is_finite()
        .bool_not()
        .any_dim(2);
    q_bad.bool_or(k_bad.expand([b, t, 1]))
}

/// The mask in the convention of `B`'s fused attention kernel. burn's is `true` = masked out, but
/// burn-tch 0.21.0 hands the mask unchanged to torch's `scaled_dot_product_attention`, where
/// `true` means "may attend". Without the inversion every masked position swaps with every
/// visible one and the logits are wrong (`tests/backend.rs` with `--features tch`). Which way a
/// backend reads it is measured, not assumed from its name: see [`fused_mask_is_inverted`].
fn backend_mask_convention<B: Backend>(mask: Tensor<B, 4, Bool>) -> Tensor<B, 4, Bool> {
    if fused_mask_is_inverted::<B>(&mask.device()) {
        mask.bool_not()
    } else {
        mask
    }
}

/// Whether `B`'s `attention` op reads a bool mask with `true` = "may attend", the opposite of
/// burn's documented convention. Measured once per backend type and cached: one query attends
/// to two keys with equal scores and values 0 and 1, with the second key masked in burn's
/// convention, so the output is 0 when the mask is read burn's way and 1 when it is inverted.
/// (Autodiff backends decompose attention in burn's convention and measure "not inverted".)
fn fused_mask_is_inverted<B: Backend>(device: &B::Device) -> bool {
    static SEEN: OnceLock<Mutex<HashMap<TypeId, bool>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    let key = TypeId::of::<B>();
    if let Some(&inverted) = seen.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return inverted;
    }
    let q = Tensor::<B, 4>::from_data(TensorData::new(vec![1.0f32], [1, 1, 1, 1]), device);
    let k = Tensor::<B, 4>::zeros([1, 1, 2, 1], device);
    let v = Tensor::<B, 4>::from_data(TensorData::new(vec![0.0f32, 1.0], [1, 1, 2, 1]), device);
    let mask =
        Tensor::<B, 4, Bool>::from_data(TensorData::new(vec![false, true], [1, 1, 1, 2]), device);
    let out = attention(q, k, v, Some(mask), None, AttentionModuleOptions::default())
        .into_scalar()
        .elem::<f32>();
    let inverted = out > 0.75;
    if inverted {
        tracing::debug!(
            backend = %B::name(device),
            "the fused attention kernel reads bool masks as true = attend; inverting Kiln's masks"
        );
    } else if out > 0.25 {
        tracing::warn!(
            backend = %B::name(device),
            probe = out,
            "the fused attention kernel seems to ignore the mask; attention may see padding and future tokens"
        );
    }
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, inverted);
    inverted
}

/// Attention with the scores, mask and softmax in f32 for half-precision `q`, `k`, `v` (HF's
/// eager attention: `softmax(q k^T * scale, dtype=float32).to(q.dtype) @ v`).
///
/// # Shapes
/// - `q`: `[b, h, tq, d]`; `k`, `v`: `[b, h, tk, d]`; `mask`: `[b, h, tq, tk]` (`true` = masked)
///   -> `[b, h, tq, d]`
fn eager_attention_f32_softmax<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Tensor<B, 4, Bool>,
) -> Tensor<B, 4> {
    let dtype = q.dtype();
    let scale = 1.0 / (q.dims()[3] as f64).sqrt();
    let scores = q
        .matmul(k.swap_dims(2, 3))
        .cast(FloatDType::F32)
        .mul_scalar(scale)
        .mask_fill(mask, f32::NEG_INFINITY);
    softmax(scores, 3).cast(FloatDType::from(dtype)).matmul(v)
}

/// Swaps dimensions 1 and 2 (`[b, t, h, d] <-> [b, h, t, d]`), materialised in the new layout.
///
/// A plain `swap_dims` is a strided view that the attention kernel (and the KV cache) must copy
/// anyway, which CPU backends do element by element for 4-D permutations. Without autodiff the
/// copy is made slice by slice along the shorter of the two axes instead (each slice a 2-D
/// strided block, copied row-wise), ~10x faster on flex; a size-1 axis is just a reshape.
/// Autodiff keeps `swap_dims`.
fn swap_middle<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, m, n, d] = x.dims();
    if m == 1 || n == 1 {
        return x.reshape([b, n, m, d]);
    }
    if B::ad_enabled(&x.device()) {
        return x.swap_dims(1, 2);
    }
    if n <= m {
        let slices = (0..n)
            .map(|i| x.clone().narrow(2, i, 1).reshape([b, 1, m, d]))
            .collect();
        Tensor::cat(slices, 1)
    } else {
        let slices = (0..m)
            .map(|i| x.clone().narrow(1, i, 1).reshape([b, n, 1, d]))
            .collect();
        Tensor::cat(slices, 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    #[test]
    fn flex_and_autodiff_read_masks_burns_way() {
        let device = Default::default();
        assert!(!fused_mask_is_inverted::<Flex>(&device));
        assert!(!fused_mask_is_inverted::<Autodiff<Flex>>(&device));
        // cached: the second call answers from the table
        assert!(!fused_mask_is_inverted::<Flex>(&device));
        let mask = Tensor::<Flex, 4, Bool>::from_data(
            TensorData::new(vec![false, true], [1, 1, 1, 2]),
            &device,
        );
        let same = backend_mask_convention(mask.clone()).equal(mask).all();
        assert!(same.into_scalar().elem::<bool>());
    }
}
