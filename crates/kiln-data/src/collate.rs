//! Padding and collation to burn tensors for generation, SFT, DPO and reward-model batches.
//!
//! # Conventions (shared with kiln-losses)
//! - `input_ids [B, T]` (Int); `attention_mask [B, T]` (Int, 1 = real token, 0 = padding).
//! - `loss_mask [B, T]` (float 0/1) is **aligned with `input_ids`**: 1 on response tokens the loss
//!   counts, 0 on prompt tokens and padding. `sequence_logprobs(logits, input_ids, loss_mask)` reads
//!   the logits at `t` as scoring `input_ids[t + 1]`, counted when `loss_mask[t + 1] == 1`.
//! - `labels [B, T]` (Int) = `input_ids` where `loss_mask == 1`, else [`IGNORE_INDEX`] (HF convention;
//!   the model shifts).
//! - Training batches are right padded with the pad id; generation prompts are left padded so the
//!   last column is every prompt's last token.
//! - Pair batches (DPO, reward model) stack **chosen rows first, then rejected rows**: rows `0..N`
//!   are the chosen sides and rows `N..2N` the rejected sides of the same `N` pairs, in order.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::examples::Example;

/// Label value of tokens the loss ignores (as in PyTorch / HF).
pub const IGNORE_INDEX: i64 = -100;

/// A padded batch on the host (row-major `[batch, seq_len]` buffers), before tensor conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct PaddedBatch {
    /// Number of rows.
    pub batch: usize,
    /// Padded length.
    pub seq_len: usize,
    /// Token ids, padding = pad id.
    pub input_ids: Vec<i64>,
    /// 1 on real tokens, 0 on padding.
    pub attention_mask: Vec<i64>,
    /// 1.0 on tokens the loss counts, 0.0 elsewhere (prompt and padding).
    pub loss_mask: Vec<f32>,
    /// `input_ids` where counted, else [`IGNORE_INDEX`].
    pub labels: Vec<i64>,
    /// Unpadded length of every row.
    pub lengths: Vec<usize>,
}

/// Tensors of a padded batch (see the module conventions).
#[derive(Debug, Clone)]
pub struct LmBatch<B: Backend> {
    /// `[B, T]` token ids.
    pub input_ids: Tensor<B, 2, Int>,
    /// `[B, T]` 1 = real token, 0 = padding.
    pub attention_mask: Tensor<B, 2, Int>,
    /// `[B, T]` float 0/1, aligned with `input_ids`.
    pub loss_mask: Tensor<B, 2>,
    /// `[B, T]` `input_ids` where counted, else [`IGNORE_INDEX`].
    pub labels: Tensor<B, 2, Int>,
    /// `[B]` index of the last real token of every row (where a reward model reads its score; for
    /// left-padded batches always `T - 1`).
    pub last_index: Tensor<B, 1, Int>,
    /// Unpadded length of every row.
    pub lengths: Vec<usize>,
}

/// A pair batch: `2N` rows, chosen rows `0..N`, rejected rows `N..2N`.
#[derive(Debug, Clone)]
pub struct PairBatch<B: Backend> {
    /// The stacked, right-padded sequences.
    pub batch: LmBatch<B>,
    /// `N`, the number of pairs.
    pub num_pairs: usize,
}

fn check_examples(examples: &[Example]) -> Result<()> {
    if examples.is_empty() {
        return Err(Error::InvalidInput("cannot collate an empty batch".into()));
    }
    for (i, e) in examples.iter().enumerate() {
        if e.ids.is_empty() {
            return Err(Error::InvalidInput(format!("example {i} has no tokens")));
        }
        if e.ids.len() != e.loss_mask.len() {
            return Err(Error::InvalidInput(format!(
                "example {i}: {} ids but {} mask entries",
                e.ids.len(),
                e.loss_mask.len()
            )));
        }
    }
    Ok(())
}

/// Right-pads examples to the longest one. Padding has attention 0, loss mask 0, label ignored.
pub fn pad_right(examples: &[Example], pad_id: u32) -> Result<PaddedBatch> {
    pad(examples, pad_id, false)
}

/// Left-pads prompts to the longest one (for generation). Loss mask is all 0, labels all ignored.
pub fn pad_left(prompts: &[Vec<u32>], pad_id: u32) -> Result<PaddedBatch> {
    let examples: Vec<Example> = prompts
        .iter()
        .map(|p| Example {
            ids: p.clone(),
            loss_mask: vec![false; p.len()],
        })
        .collect();
    pad(&examples, pad_id, true)
}

/// Pads every row to the longest one, on the left or on the right.
fn pad(examples: &[Example], pad_id: u32, left: bool) -> Result<PaddedBatch> {
    check_examples(examples)?;
    let batch = examples.len();
    let seq_len = examples.iter().map(Example::len).max().unwrap_or(0);
    let n = batch * seq_len;
    let mut out = PaddedBatch {
        batch,
        seq_len,
        input_ids: vec![pad_id as i64; n],
        attention_mask: vec![0; n],
        loss_mask: vec![0.0; n],
        labels: vec![IGNORE_INDEX; n],
        lengths: examples.iter().map(Example::len).collect(),
    };
    for (row, e) in examples.iter().enumerate() {
        let offset = if left { seq_len - e.len() } else { 0 };
        for (t, (&id, &m)) in e.ids.iter().zip(&e.loss_mask).enumerate() {
            let k = row * seq_len + offset + t;
            out.input_ids[k] = id as i64;
            out.attention_mask[k] = 1;
            if m {
                out.loss_mask[k] = 1.0;
                out.labels[k] = id as i64;
            }
        }
    }
    Ok(out)
}

impl PaddedBatch {
    /// Index of the last real token of each row (`T - 1` for left padding).
    pub fn last_indices(&self) -> Vec<i64> {
        (0..self.batch)
            .map(|r| {
                let row = &self.attention_mask[r * self.seq_len..(r + 1) * self.seq_len];
                row.iter().rposition(|&a| a == 1).map_or(0, |i| i as i64)
            })
            .collect()
    }

    /// Uploads the buffers as tensors on `device`.
    pub fn to_tensors<B: Backend>(&self, device: &B::Device) -> LmBatch<B> {
        let shape = [self.batch, self.seq_len];
        let int = |v: &Vec<i64>| {
            Tensor::<B, 2, Int>::from_data(TensorData::new(v.clone(), shape), device)
        };
        LmBatch {
            input_ids: int(&self.input_ids),
            attention_mask: int(&self.attention_mask),
            loss_mask: Tensor::<B, 2>::from_data(
                TensorData::new(self.loss_mask.clone(), shape),
                device,
            ),
            labels: int(&self.labels),
            last_index: Tensor::<B, 1, Int>::from_data(
                TensorData::new(self.last_indices(), [self.batch]),
                device,
            ),
            lengths: self.lengths.clone(),
        }
    }
}

/// Left-padded generation batch.
pub fn collate_generation<B: Backend>(
    prompts: &[Vec<u32>],
    pad_id: u32,
    device: &B::Device,
) -> Result<LmBatch<B>> {
    Ok(pad_left(prompts, pad_id)?.to_tensors(device))
}

/// Right-padded SFT (or any single-sequence) batch.
pub fn collate_sft<B: Backend>(
    examples: &[Example],
    pad_id: u32,
    device: &B::Device,
) -> Result<LmBatch<B>> {
    Ok(pad_right(examples, pad_id)?.to_tensors(device))
}

/// Stacks `(chosen, rejected)` pairs as one right-padded batch: chosen rows first, then rejected.
pub fn pad_pairs(pairs: &[(Example, Example)], pad_id: u32) -> Result<PaddedBatch> {
    let mut rows: Vec<Example> = pairs.iter().map(|(c, _)| c.clone()).collect();
    rows.extend(pairs.iter().map(|(_, r)| r.clone()));
    pad_right(&rows, pad_id)
}

/// DPO / reward-model batch of `N` pairs as `2N` rows (chosen rows `0..N`, rejected rows `N..2N`).
pub fn collate_pairs<B: Backend>(
    pairs: &[(Example, Example)],
    pad_id: u32,
    device: &B::Device,
) -> Result<PairBatch<B>> {
    Ok(PairBatch {
        batch: pad_pairs(pairs, pad_id)?.to_tensors(device),
        num_pairs: pairs.len(),
    })
}
