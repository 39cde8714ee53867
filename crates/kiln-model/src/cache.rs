//! Per-layer key/value cache for incremental decoding.
//!
//! The cache stores post-RoPE keys and values of every layer. It is batch- and padding-aware
//! through the attention mask the caller passes each step (the mask covers cached + new tokens),
//! from which per-row positions are derived, so left-padded prompts decode like unpadded ones.
//!
//! Typical generation: prefill a prompt batch once, then [`KvCache::repeat_interleave`] it `K`
//! times to sample `K` continuations per prompt (rows `p*K .. p*K+K` belong to prompt `p`), and
//! [`KvCache::select`] to keep or reorder rows.
//!
//! # Shapes
//! - each layer's key and value: `[batch, num_key_value_heads, cached_len, head_dim]`

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// Cached keys and values of one layer.
#[derive(Debug, Clone)]
pub struct LayerKv<B: Backend> {
    /// Post-RoPE keys, `[batch, kv_heads, len, head_dim]`.
    pub key: Tensor<B, 4>,
    /// Values, `[batch, kv_heads, len, head_dim]`.
    pub value: Tensor<B, 4>,
}

/// Key/value cache for all layers of a model.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<LayerKv<B>>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model with `num_layers` decoder layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
        }
    }

    /// Number of layers the cache was created for.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Number of cached positions (0 when empty).
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |l| l.key.dims()[2])
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batch size of the cached tensors (`None` when empty).
    pub fn batch_size(&self) -> Option<usize> {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map(|l| l.key.dims()[0])
    }

    /// The cached tensors of layer `layer`, if any.
    pub fn layer(&self, layer: usize) -> Option<&LayerKv<B>> {
        self.layers.get(layer).and_then(|l| l.as_ref())
    }

    /// Appends new keys/values to layer `layer` and returns the full (cached + new) tensors.
    ///
    /// # Shapes
    /// - `key`, `value`: `[batch, kv_heads, new, head_dim]` -> `[batch, kv_heads, len + new, head_dim]`
    pub fn append(
        &mut self,
        layer: usize,
        key: Tensor<B, 4>,
        value: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let (key, value) = match self.layers[layer].take() {
            None => (key, value),
            Some(past) => (
                Tensor::cat(vec![past.key, key], 2),
                Tensor::cat(vec![past.value, value], 2),
            ),
        };
        self.layers[layer] = Some(LayerKv {
            key: key.clone(),
            value: value.clone(),
        });
        (key, value)
    }

    fn map(&self, f: impl Fn(Tensor<B, 4>) -> Tensor<B, 4>) -> Self {
        Self {
            layers: self
                .layers
                .iter()
                .map(|l| {
                    l.as_ref().map(|l| LayerKv {
                        key: f(l.key.clone()),
                        value: f(l.value.clone()),
                    })
                })
                .collect(),
        }
    }

    /// Repeats every row `times` times consecutively (`[a, b] -> [a, a, b, b]` for 2), like
    /// `torch.repeat_interleave(dim=0)`. Repeat the attention mask the same way.
    ///
    /// # Shapes
    /// - `[batch, h, len, d]` -> `[batch * times, h, len, d]` per layer
    pub fn repeat_interleave(&self, times: usize) -> Self {
        self.map(|t| {
            let [b, h, l, d] = t.dims();
            t.reshape([b, 1, h * l * d])
                .repeat_dim(1, times)
                .reshape([b * times, h, l, d])
        })
    }

    /// Keeps (and reorders) the rows listed in `rows`.
    ///
    /// # Shapes
    /// - `rows`: `[new_batch]` -> per layer `[new_batch, h, len, d]`
    pub fn select(&self, rows: Tensor<B, 1, Int>) -> Self {
        self.map(|t| t.select(0, rows.clone()))
    }
}
