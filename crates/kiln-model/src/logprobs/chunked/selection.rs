//! The scored positions of a batch (found on the host from the shifted mask), one chunk's
//! log-probs and logit gradient, and the small host/dtype helpers they share.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, IndexingUpdateOp, Int, Tensor, TensorData};

use super::LmHead;
use crate::logprobs::sequence::LogProbReduction;

/// The scored positions of a batch, found on the host from the (shifted) mask.
pub(super) struct Selection<B: Backend> {
    /// Flat `[batch * seq]` indices of the hidden rows that predict a counted token.
    pub(super) rows: Tensor<B, 1, Int>,
    /// The tokens they predict, `[n]`.
    pub(super) labels: Tensor<B, 1, Int>,
    /// Flat `[batch * (seq - 1)]` output index of each selected position.
    pub(super) out: Tensor<B, 1, Int>,
    /// `d lp_b / d tok` of each selected position (mask, divided by the row's count for
    /// `Mean`), and its row `b`.
    pub(super) coef: Vec<f32>,
    pub(super) coef_row: Vec<usize>,
    pub(super) n: usize,
}

pub(super) fn host_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap_or_default()
}

pub(super) fn host_i64<B: Backend, const D: usize>(t: Tensor<B, D, Int>) -> Vec<i64> {
    t.into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .unwrap_or_default()
}

pub(super) fn int_tensor<B: Backend>(v: Vec<i64>, device: &B::Device) -> Tensor<B, 1, Int> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// `dtype` widened to at least f32 (log-sum-exp of f16/bf16 logits is taken in f32, like HF).
pub(super) fn compute_dtype(dtype: DType) -> DType {
    match dtype {
        DType::F16 | DType::BF16 => DType::F32,
        d => d,
    }
}

pub(super) fn cast<B: Backend, const D: usize>(t: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    if t.dtype() == dtype {
        t
    } else {
        t.cast(FloatDType::from(dtype))
    }
}

impl<B: Backend> Selection<B> {
    /// Positions `(b, j)`, `j < seq - 1`, with `mask[b, j + 1] != 0`: hidden row `b * seq + j`
    /// predicts `input_ids[b, j + 1]`.
    pub(super) fn shifted(
        input_ids: Tensor<B, 2, Int>,
        mask: Tensor<B, 2>,
        reduction: LogProbReduction,
    ) -> Self {
        let [b, t] = input_ids.dims();
        let device = input_ids.device();
        let ids = host_i64(input_ids);
        let m = host_f32(mask);
        let (mut rows, mut labels, mut out) = (Vec::new(), Vec::new(), Vec::new());
        let (mut coef, mut coef_row) = (Vec::new(), Vec::new());
        for r in 0..b {
            let counted: f32 = (1..t).map(|j| m[r * t + j]).sum();
            let scale = match reduction {
                LogProbReduction::Sum => 1.0,
                LogProbReduction::Mean => 1.0 / counted.max(1.0),
            };
            for j in 0..t - 1 {
                let w = m[r * t + j + 1];
                if w != 0.0 {
                    rows.push((r * t + j) as i64);
                    labels.push(ids[r * t + j + 1]);
                    out.push((r * (t - 1) + j) as i64);
                    coef.push(w * scale);
                    coef_row.push(r);
                }
            }
        }
        let n = rows.len();
        Self {
            rows: int_tensor(rows, &device),
            labels: int_tensor(labels, &device),
            out: int_tensor(out, &device),
            coef,
            coef_row,
            n,
        }
    }

    /// Every position, no shift: row `i` is scored against `labels[i]`.
    pub(super) fn all(labels: Tensor<B, 2, Int>) -> Self {
        let [b, t] = labels.dims();
        let device = labels.device();
        let all: Vec<i64> = (0..(b * t) as i64).collect();
        Self {
            rows: int_tensor(all.clone(), &device),
            labels: labels.reshape([b * t]),
            out: int_tensor(all, &device),
            coef: vec![1.0; b * t],
            coef_row: (0..b * t).map(|i| i / t.max(1)).collect(),
            n: b * t,
        }
    }
}

/// One chunk of selected rows: per-token log-probs and log-sum-exps (compute dtype) and, when
/// asked, the logit gradient `onehot(y) - softmax(logits)` (compute dtype).
pub(super) fn chunk<B: Backend>(
    head: &LmHead<B>,
    hidden: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    want_delta: bool,
) -> (Tensor<B, 1>, Tensor<B, 1>, Option<Tensor<B, 2>>) {
    let [c, _] = hidden.dims();
    let logits = head.logits(hidden);
    let dtype = compute_dtype(logits.dtype());
    let logits = cast(logits, dtype);
    // The same operations as burn's `log_softmax` (x - max - log(sum(exp(x - max)))), gathered.
    let max = logits.clone().detach().max_dim(1);
    let shifted = logits - max.clone();
    let labels = labels.reshape([c, 1]);
    let label = shifted.clone().gather(1, labels.clone());
    let lse = shifted.clone().exp().sum_dim(1).log();
    let tok = (label - lse.clone()).reshape([c]);
    let delta = want_delta.then(|| {
        let p = (shifted - lse.clone()).exp();
        let ones = Tensor::<B, 2>::ones([c, 1], (&p.device(), p.dtype()));
        p.neg().scatter(1, labels, ones, IndexingUpdateOp::Add)
    });
    (tok, (lse + max).reshape([c]), delta)
}

/// What `ChunkedLogProbs::select_forward` computes besides the per-token log-probs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Extra {
    /// Nothing (inference).
    None,
    /// The hidden-state Jacobian rows `(onehot(y) - p) W^T` (training with a frozen head).
    HiddenJacobian,
    /// The log-sum-exp of every position (training with a trainable head).
    LogSumExp,
}
