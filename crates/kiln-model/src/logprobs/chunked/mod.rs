//! Label log-probs straight from final hidden states and the LM head, chunk by chunk:
//! `log_softmax(h W)[y] = logit[y] - logsumexp(logits)`, without ever holding the
//! `[batch, seq, vocab]` logits or their log-softmax (forward *and* backward).
//!
//! Only the positions that count (mask `!= 0`) are projected onto the vocabulary, at most
//! `chunk_size` of them at once; each chunk is reduced to its label logit and log-sum-exp
//! (computed in f32 for f16/bf16 heads, like HF's `logits.float()`) before the next one is made.
//!
//! **Training** ([`ChunkedLogProbs::sequence_loss`]). burn 0.21 has no custom-autograd API
//! usable from generic code, so the gradient of the log-probs is computed by hand on the inner
//! backend and handed back to autodiff through a surrogate:
//! 1. the per-sequence log-probs `lp_b = sum_t w_bt (h_bt . W[y_bt] - lse_bt)` are computed
//!    chunk-wise on the inner tensors (`w_bt` = mask, divided by the row's count for
//!    [`LogProbReduction::Mean`]);
//! 2. the caller's loss is built on `lp` as a fresh leaf, and its backward gives `g = dL/dlp`
//!    (a graph of a few scalars per sequence);
//! 3. `dL/dh_bt = g_b w_bt (W[y_bt] - softmax(h_bt W) W)` and, when the head is trainable,
//!    `dL/dW = sum_bt g_b w_bt h_bt^T (onehot(y_bt) - p_bt)` (layout-adjusted), recomputed chunk
//!    by chunk;
//! 4. the returned loss is `s - detach(s) + detach(L)` with the surrogate
//!    `s = sum(H * G_H) + sum(W * G_W)` (`G` constants): its value is exactly `L` and its
//!    backward sends exactly `G_H` into `H` (hence into every parameter below it) and `G_W` into
//!    the head weight (the tied embedding accumulates both of its gradients).
//!
//! With a frozen head (LoRA) `dL/dW` is skipped and the head is applied twice per chunk
//! (logits, then `(onehot - p) W` in the same pass); with a trainable head four times (a second
//! pass recomputes the logits for `dL/dW`), against three for autodiff of the full logits.

mod lm_head;
mod selection;
mod strategy;

pub use lm_head::LmHead;
pub use strategy::{LogProbStrategy, full_sequence_logprobs};

use burn::config::Config;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, IndexingUpdateOp, Int, Tensor, TensorData};

use super::sequence::{LogProbReduction, reduce_token_logprobs};
use crate::error::check_parameter as check;
use selection::{Extra, Selection, cast, chunk, compute_dtype, host_f32, host_i64};

/// Configuration of [`ChunkedLogProbs`]; `init` validates it.
#[derive(Config, Debug, PartialEq)]
pub struct ChunkedLogProbsConfig {
    /// Positions whose logits exist at once (`>= 1`). Peak memory of the head is about
    /// `chunk_size * vocab * 4` bytes times a few temporaries (256 x 128,256 x 4 = 131 MB).
    #[config(default = 256)]
    pub chunk_size: usize,
}

impl ChunkedLogProbsConfig {
    /// Validates the configuration.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) for `chunk_size == 0`.
    pub fn init(&self) -> crate::Result<ChunkedLogProbs> {
        check(
            "chunked_logprobs",
            "chunk_size",
            self.chunk_size as f64,
            self.chunk_size >= 1,
            "chunk_size >= 1",
        )?;
        Ok(ChunkedLogProbs {
            chunk_size: self.chunk_size,
        })
    }
}

/// Chunked `logit[label] - logsumexp(logits)` (see the [module docs](self)). Serialised as its
/// config; a deserialised one is validated like [`ChunkedLogProbsConfig::init`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "ChunkedLogProbsConfig", into = "ChunkedLogProbsConfig")]
pub struct ChunkedLogProbs {
    chunk_size: usize,
}

impl TryFrom<ChunkedLogProbsConfig> for ChunkedLogProbs {
    type Error = crate::Error;

    fn try_from(config: ChunkedLogProbsConfig) -> crate::Result<Self> {
        config.init()
    }
}

impl From<ChunkedLogProbs> for ChunkedLogProbsConfig {
    fn from(c: ChunkedLogProbs) -> Self {
        ChunkedLogProbsConfig::new().with_chunk_size(c.chunk_size)
    }
}

impl Default for ChunkedLogProbs {
    fn default() -> Self {
        Self { chunk_size: 256 }
    }
}

impl ChunkedLogProbs {
    /// Positions per chunk.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Per-token log-probs of the selected rows, `[n]`, chunk by chunk, and `extra`:
    /// the hidden-state Jacobian rows `(onehot(y) - p) W^T` (`[n, hidden]`, head dtype) or the
    /// log-sum-exps (`[n, 1]`, compute dtype).
    fn select_forward<B: Backend>(
        &self,
        hidden: Tensor<B, 2>,
        head: &LmHead<B>,
        sel: &Selection<B>,
        extra: Extra,
    ) -> (Tensor<B, 1>, Option<Tensor<B, 2>>) {
        let device = hidden.device();
        let dtype = compute_dtype(head.weight().dtype());
        if sel.n == 0 {
            return (Tensor::zeros([0], (&device, dtype)), None);
        }
        let h = hidden.select(0, sel.rows.clone());
        let (mut toks, mut extras) = (Vec::new(), Vec::new());
        for s in (0..sel.n).step_by(self.chunk_size) {
            let len = self.chunk_size.min(sel.n - s);
            let (tok, lse, delta) = chunk(
                head,
                h.clone().narrow(0, s, len),
                sel.labels.clone().narrow(0, s, len),
                extra == Extra::HiddenJacobian,
            );
            toks.push(tok);
            match (extra, delta) {
                (Extra::HiddenJacobian, Some(delta)) => {
                    extras.push(head.hidden_grad(cast(delta, head.weight().dtype())));
                }
                (Extra::LogSumExp, _) => extras.push(lse.reshape([len, 1])),
                _ => {}
            }
        }
        let extra = (extra != Extra::None).then(|| Tensor::cat(extras, 0));
        (Tensor::cat(toks, 0), extra)
    }

    /// Gradients for a trainable head, vocabulary slice by vocabulary slice (so that no
    /// weight-sized temporary is made per chunk): `dlogits = coef (onehot(y) - p)` with
    /// `p = exp(logits - lse)`, `G_H = dlogits W^T` and `G_W` (the weight's layout) written slice
    /// by slice into one buffer.
    ///
    /// # Shapes
    /// - `h`: `[n, hidden]` selected states; `lse`, `coef`: `[n, 1]` (compute dtype)
    /// - output: (`[n, hidden]` in the states' dtype, the weight's shape and dtype)
    fn trainable_head_grads<B: Backend>(
        &self,
        head: &LmHead<B>,
        h: Tensor<B, 2>,
        labels: &[i64],
        lse: Tensor<B, 2>,
        coef: Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let [n, d] = h.dims();
        let device = h.device();
        let vocab = head.vocab_size();
        let (w_dtype, h_dtype) = (head.weight().dtype(), h.dtype());
        let cdt = compute_dtype(w_dtype);
        // At most about `chunk_size * vocab` logits at once, as in the forward pass.
        let slice = if n <= self.chunk_size {
            vocab
        } else {
            (self.chunk_size * vocab / n).max(1)
        };
        let neg_coef = coef.clone().neg();
        let coef_host = host_f32(coef);
        let h_w = cast(h.clone(), w_dtype);
        let mut gh = Tensor::<B, 2>::zeros([n, d], (&device, cdt));
        let mut gw = Tensor::<B, 2>::zeros(head.weight().shape(), (&device, w_dtype));
        for v0 in (0..vocab).step_by(slice) {
            let len = slice.min(vocab - v0);
            let part = head.narrow_vocab(v0, len);
            let logits = cast(part.logits(h_w.clone()), cdt);
            // The one-hot term of the rows whose label falls in this slice (0 elsewhere).
            let (mut idx, mut val) = (vec![0i64; n], vec![0f32; n]);
            for (i, &y) in labels.iter().enumerate() {
                let y = y as usize;
                if (v0..v0 + len).contains(&y) {
                    idx[i] = (y - v0) as i64;
                    val[i] = coef_host[i];
                }
            }
            let idx = Tensor::<B, 2, Int>::from_data(TensorData::new(idx, [n, 1]), &device);
            let val = Tensor::<B, 2>::from_data(TensorData::new(val, [n, 1]), (&device, cdt));
            let dlogits = ((logits - lse.clone()).exp() * neg_coef.clone()).scatter(
                1,
                idx,
                val,
                IndexingUpdateOp::Add,
            );
            let dlogits = cast(dlogits, w_dtype);
            gh = gh + cast(part.hidden_grad(dlogits.clone()), cdt);
            gw = head.assign_vocab(gw, v0, part.weight_grad(dlogits, h_w.clone()));
        }
        (cast(gh, h_dtype), gw)
    }

    /// `log_softmax(head(hidden))[b, t, labels[b, t]]` (no shift), in f32 for f16/bf16 heads
    /// (else the head's dtype). Equals
    /// [`gather_logprobs`](crate::gather_logprobs)`(head.logits3(hidden), labels)`.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, hidden]`; `labels`: `[batch, seq]` -> `[batch, seq]`
    pub fn label_logprobs<B: Backend>(
        &self,
        hidden: Tensor<B, 3>,
        head: &LmHead<B>,
        labels: Tensor<B, 2, Int>,
    ) -> Tensor<B, 2> {
        let [b, t, d] = hidden.dims();
        let sel = Selection::all(labels);
        let (tok, _) = self.select_forward(hidden.reshape([b * t, d]), head, &sel, Extra::None);
        tok.reshape([b, t])
    }

    /// Per-token next-token log-probs with the causal shift, masked: column `t` is
    /// `log p(input_ids[:, t + 1] | ..=t) * mask[:, t + 1]`; only counted positions are
    /// projected. Equals [`shifted_token_logprobs`](crate::shifted_token_logprobs) on the full
    /// logits.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, hidden]`; `input_ids`, `mask`: `[batch, seq]`
    ///   -> `[batch, seq - 1]`
    pub fn shifted_token_logprobs<B: Backend>(
        &self,
        hidden: Tensor<B, 3>,
        head: &LmHead<B>,
        input_ids: Tensor<B, 2, Int>,
        mask: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let [b, t, d] = hidden.dims();
        if t < 2 {
            // No position has a next token: nothing to score.
            return Tensor::zeros([b, 0], (&hidden.device(), hidden.dtype()));
        }
        let sel = Selection::shifted(input_ids, mask.clone(), LogProbReduction::Sum);
        let (tok, _) = self.select_forward(hidden.reshape([b * t, d]), head, &sel, Extra::None);
        scatter_tokens(tok, &sel, mask, b, t)
    }

    /// Sequence log-probs of the masked tokens (with the next-token shift), summed or
    /// length-averaged: [`sequence_logprobs`](crate::sequence_logprobs) of the full logits,
    /// without them. Differentiable on an autodiff backend, but then every chunk's logits are
    /// kept for backward: train with [`Self::sequence_loss`].
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, hidden]`; `input_ids`, `mask`: `[batch, seq]` -> `[batch]`
    pub fn sequence_logprobs<B: Backend>(
        &self,
        hidden: Tensor<B, 3>,
        head: &LmHead<B>,
        input_ids: Tensor<B, 2, Int>,
        mask: Tensor<B, 2>,
        reduction: LogProbReduction,
    ) -> Tensor<B, 1> {
        let [b, t, _] = hidden.dims();
        if t < 2 {
            // An empty sum (for `Mean`, a mean over no tokens, as for an all-masked row).
            return Tensor::zeros([b], (&hidden.device(), hidden.dtype()));
        }
        let per_token = self.shifted_token_logprobs(hidden, head, input_ids, mask.clone());
        reduce_token_logprobs(per_token, mask, reduction)
    }

    /// A loss on sequence log-probs, with gradients computed chunk-wise by hand (see the
    /// [module docs](self)).
    ///
    /// `loss_fn` receives the sequence log-probs `lp` (`[batch]`, f32 for f16/bf16 heads, as a
    /// fresh autodiff leaf) and returns the scalar loss plus anything else (metrics). The
    /// returned tensor has the loss's value and, on `backward()`, the exact gradient of the
    /// loss with respect to `hidden`, everything below it, and the head weight when it is a
    /// parameter leaf that requires grad (`is_require_grad()`: a model's `lm_head` or tied
    /// embedding; a head *derived* from parameters, e.g. through a cast, counts as frozen).
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, hidden]` (autodiff); `input_ids`, `mask`: `[batch, seq]`
    /// - `loss_fn`: `[batch]` -> `[1]`; output `[1]`
    pub fn sequence_loss<B, T, F>(
        &self,
        hidden: Tensor<B, 3>,
        head: &LmHead<B>,
        input_ids: Tensor<B, 2, Int>,
        mask: Tensor<B, 2>,
        reduction: LogProbReduction,
        loss_fn: F,
    ) -> (Tensor<B, 1>, T)
    where
        B: AutodiffBackend,
        F: FnOnce(Tensor<B, 1>) -> (Tensor<B, 1>, T),
    {
        let [b, t, d] = hidden.dims();
        if t < 2 {
            // No token to score: the log-probs are an empty sum, constant in `hidden` and the
            // head, so the loss has their value and no gradient path into the model.
            let lp = Tensor::<B, 1>::zeros(
                [b],
                (&hidden.device(), compute_dtype(head.weight().dtype())),
            );
            let (loss, out) = loss_fn(lp);
            return (loss.detach(), out);
        }
        let train_head = head.weight().is_require_grad();
        let h_in = hidden.clone().inner().reshape([b * t, d]);
        let head_in = head.inner();
        let mask_in = mask.inner();
        let sel = Selection::shifted(input_ids.clone().inner(), mask_in.clone(), reduction);

        // 1. Values (and, for a frozen head, the hidden-state Jacobian rows in the same pass;
        //    for a trainable one, the log-sum-exps).
        let extra = if train_head {
            Extra::LogSumExp
        } else {
            Extra::HiddenJacobian
        };
        let (tok, extra) = self.select_forward(h_in.clone(), &head_in, &sel, extra);
        let per_token = scatter_tokens(tok, &sel, mask_in.clone(), b, t);
        let lp = reduce_token_logprobs(per_token, mask_in, reduction);

        // 2. g = dL/dlp through the caller's (small) loss graph.
        let leaf = Tensor::<B, 1>::from_inner(lp.clone()).require_grad();
        let (loss, out) = loss_fn(leaf.clone());
        let g = leaf
            .grad(&loss.backward())
            .map(host_f32)
            .unwrap_or_else(|| vec![0.0; b]);
        let coef: Vec<f32> = sel
            .coef
            .iter()
            .zip(&sel.coef_row)
            .map(|(c, &r)| c * g[r])
            .collect();

        // 3. G_H (and G_W), and the surrogate `<H, G_H> + <W, G_W>`.
        let h_dtype = h_in.dtype();
        let device = h_in.device();
        let cdt = compute_dtype(head_in.weight().dtype());
        let coef = Tensor::<B::InnerBackend, 2>::from_data(
            TensorData::new(coef, [sel.n, 1]),
            (&device, DType::F32),
        );
        let coef = cast(coef, cdt);
        let mut surrogate = None;
        if let Some(extra) = extra {
            let g_rows = if train_head {
                let labels = host_i64(sel.labels.clone());
                let h = h_in.clone().select(0, sel.rows.clone());
                let (g_rows, gw) = self.trainable_head_grads(&head_in, h, &labels, extra, coef);
                surrogate = Some(dot(head.weight().clone(), gw));
                g_rows
            } else {
                cast(extra, h_dtype) * cast(coef, h_dtype)
            };
            let gh = Tensor::<B::InnerBackend, 2>::zeros([b * t, d], (&device, h_dtype))
                .select_assign(0, sel.rows.clone(), g_rows, IndexingUpdateOp::Add);
            let s_h = dot(hidden, gh.reshape([b, t, d]));
            surrogate = Some(match surrogate {
                Some(s_w) => s_w + s_h,
                None => s_h,
            });
        }

        // 4. Value of the loss, gradient of the surrogate.
        let value = Tensor::<B, 1>::from_inner(loss.inner());
        let loss_out = match surrogate {
            Some(s) => {
                let s = cast(s, value.dtype());
                (s.clone() - s.detach()) + value
            }
            None => value,
        };
        (loss_out, out)
    }
}

/// `<x, constant>` as a differentiable f32 scalar, `sum(x * c)`: its backward allocates only
/// `x`'s gradient (the ones of `sum`'s backward are overwritten in place by the product with
/// `c`); the forward product is freed by the sum. (A `[1, N] x [N, 1]` matmul would avoid the
/// forward product but its backward makes two `x`-sized tensors on flex.)
fn dot<B: AutodiffBackend, const D: usize>(
    x: Tensor<B, D>,
    constant: Tensor<B::InnerBackend, D>,
) -> Tensor<B, 1> {
    cast((x * Tensor::<B, D>::from_inner(constant)).sum(), DType::F32)
}

/// Scatters selected per-token log-probs into `[batch, seq - 1]` (zeros elsewhere) and applies
/// the mask like [`shifted_token_logprobs`](crate::shifted_token_logprobs).
fn scatter_tokens<B: Backend>(
    tok: Tensor<B, 1>,
    sel: &Selection<B>,
    mask: Tensor<B, 2>,
    b: usize,
    t: usize,
) -> Tensor<B, 2> {
    let dtype = tok.dtype();
    let flat = Tensor::<B, 1>::zeros([b * (t - 1)], (&tok.device(), dtype));
    let flat = if sel.n == 0 {
        flat
    } else {
        flat.select_assign(0, sel.out.clone(), tok, IndexingUpdateOp::Add)
    };
    let mask = cast(mask.slice([0..b, 1..t]), dtype);
    flat.reshape([b, t - 1]) * mask
}
