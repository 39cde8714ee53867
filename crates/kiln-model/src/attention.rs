//! Grouped-query self-attention with rotate-half RoPE and an optional KV cache.

use burn::module::Module;
use burn::nn::Linear;

use crate::linear::linear3;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Tensor};

use crate::cache::KvCache;
use crate::rope::apply_rotary;

/// Llama self-attention (HF names `self_attn.{q,k,v,o}_proj`, no biases).
#[derive(Module, Debug)]
pub struct LlamaAttention<B: Backend> {
    /// `[hidden] -> [num_heads * head_dim]`.
    pub q_proj: Linear<B>,
    /// `[hidden] -> [num_kv_heads * head_dim]`.
    pub k_proj: Linear<B>,
    /// `[hidden] -> [num_kv_heads * head_dim]`.
    pub v_proj: Linear<B>,
    /// `[num_heads * head_dim] -> [hidden]`.
    pub o_proj: Linear<B>,
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
    /// - `cos`, `sin`: `[batch, 1, seq, head_dim]`
    /// - `mask`: `[batch, 1, seq, cached + seq]`, `true` = masked out
    /// - output: `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        cos: Tensor<B, 4>,
        sin: Tensor<B, 4>,
        mask: Tensor<B, 4, Bool>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let split = |y: Tensor<B, 3>, heads: usize| y.reshape([b, t, heads, hd]).swap_dims(1, 2);
        let q = split(linear3(&self.q_proj, x.clone()), nh);
        let k = split(linear3(&self.k_proj, x.clone()), nkv);
        let v = split(linear3(&self.v_proj, x), nkv);
        let q = apply_rotary(q, cos.clone(), sin.clone());
        let k = apply_rotary(k, cos, sin);
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
        // backends decompose it into differentiable ops).
        let out = attention(q, k, v, Some(mask), None, AttentionModuleOptions::default());
        let out = out
            .reshape([b, nh, t, hd])
            .swap_dims(1, 2)
            .reshape([b, t, nh * hd]);
        linear3(&self.o_proj, out)
    }
}
