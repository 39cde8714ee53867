//! The LM head's weight in either layout a causal LM stores it in, and the products with it that
//! the chunked log-probs need (logits, hidden and weight gradients, vocabulary slices).

use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

/// The LM head's weight, in one of the two layouts a causal LM stores it in.
#[derive(Debug, Clone)]
pub enum LmHead<B: Backend> {
    /// `[vocab, hidden]`, e.g. a tied input embedding: `logits = h W^T`.
    VocabMajor(Tensor<B, 2>),
    /// `[hidden, vocab]`, burn's `Linear` layout: `logits = h W`.
    HiddenMajor(Tensor<B, 2>),
}

impl<B: Backend> LmHead<B> {
    /// The weight tensor.
    pub fn weight(&self) -> &Tensor<B, 2> {
        match self {
            LmHead::VocabMajor(w) | LmHead::HiddenMajor(w) => w,
        }
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        match self {
            LmHead::VocabMajor(w) => w.dims()[0],
            LmHead::HiddenMajor(w) => w.dims()[1],
        }
    }

    /// Logits of hidden rows, in the head's dtype.
    ///
    /// # Shapes
    /// - `hidden`: `[n, hidden]` -> `[n, vocab]`
    pub fn logits(&self, hidden: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            LmHead::VocabMajor(w) => hidden.matmul(w.clone().transpose()),
            LmHead::HiddenMajor(w) => hidden.matmul(w.clone()),
        }
    }

    /// Logits of `[batch, seq, hidden]` states as one 2-D matmul.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, hidden]` -> `[batch, seq, vocab]`
    pub fn logits3(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, d] = hidden.dims();
        let v = self.vocab_size();
        self.logits(hidden.reshape([b * t, d])).reshape([b, t, v])
    }

    /// Columns `start..start + len` of the vocabulary (a view of the weight).
    pub(super) fn narrow_vocab(&self, start: usize, len: usize) -> Self {
        match self {
            LmHead::VocabMajor(w) => LmHead::VocabMajor(w.clone().narrow(0, start, len)),
            LmHead::HiddenMajor(w) => LmHead::HiddenMajor(w.clone().narrow(1, start, len)),
        }
    }

    /// Writes `piece` (the weight gradient of vocabulary columns `start..`) into `full`.
    pub(super) fn assign_vocab(
        &self,
        full: Tensor<B, 2>,
        start: usize,
        piece: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let [r, c] = piece.dims();
        match self {
            LmHead::VocabMajor(_) => full.slice_assign([start..start + r, 0..c], piece),
            LmHead::HiddenMajor(_) => full.slice_assign([0..r, start..start + c], piece),
        }
    }

    /// Back-propagates logit gradients to the hidden rows: `dlogits W^T` in `logits = h W`.
    ///
    /// # Shapes
    /// - `dlogits`: `[n, vocab]` -> `[n, hidden]`
    pub(super) fn hidden_grad(&self, dlogits: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            LmHead::VocabMajor(w) => dlogits.matmul(w.clone()),
            LmHead::HiddenMajor(w) => dlogits.matmul(w.clone().transpose()),
        }
    }

    /// The weight gradient of logit gradients `dlogits` at hidden rows `hidden`, in the
    /// weight's layout.
    ///
    /// # Shapes
    /// - `dlogits`: `[n, vocab]`, `hidden`: `[n, hidden]` -> the weight's shape
    pub(super) fn weight_grad(&self, dlogits: Tensor<B, 2>, hidden: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            LmHead::VocabMajor(_) => dlogits.transpose().matmul(hidden),
            LmHead::HiddenMajor(_) => hidden.transpose().matmul(dlogits),
        }
    }
}

impl<B: AutodiffBackend> LmHead<B> {
    /// The head on the inner backend (no autodiff).
    pub fn inner(&self) -> LmHead<B::InnerBackend> {
        match self {
            LmHead::VocabMajor(w) => LmHead::VocabMajor(w.clone().inner()),
            LmHead::HiddenMajor(w) => LmHead::HiddenMajor(w.clone().inner()),
        }
    }
}
