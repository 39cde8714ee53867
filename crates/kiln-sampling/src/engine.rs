//! The generation engine: batched, left-padded, KV-cached decoding with `K` responses per prompt.
//!
//! The prompts are cut into batches of equal size (at most `prompt_batch_size`), of which
//! `concurrent_batches` are decoded at a time, each as a task on the rayon pool. Per batch: the
//! prompts are left-padded and prefilled once; the last position's logits give every response's
//! first token, and the cache is copied `K` times ([`KvCache::repeat_interleave`]), so row
//! `p * K + k` is response `k` of prompt `p`. Each step then feeds one token per active row and
//! samples the rows in parallel (each row owns its RNG stream). Rows that finish are dropped from
//! the batch (the cache and the mask keep only active rows, [`KvCache::select`]), so finished
//! responses cost nothing. Without the cache (`use_cache = false`) every step recomputes the full
//! sequence (benchmarks).

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use kiln_data::{Rng, Tokenizer};
use kiln_model::{CausalLm, KvCache};

use crate::config::GenerationConfig;
use crate::error::{Error, Result};
use crate::output::{FinishReason, Generation, GenerationOutput, GenerationStats, Progress};
use crate::sampler::{Sampler, logits_to_host, non_finite_logits, row_rng};
use crate::stop::StopCriteria;

/// Generates responses with any [`CausalLm`] (Llama, Qwen2, a user's own architecture). Cheap to
/// build; borrows the model and tokenizer.
pub struct Generator<'a, B: Backend> {
    model: &'a (dyn CausalLm<B> + Sync),
    tokenizer: Option<&'a Tokenizer>,
    config: GenerationConfig,
    sampler: Sampler,
}

/// One response being decoded.
struct Row {
    prompt: usize,
    sample: usize,
    /// Left padding of the prompt in this chunk.
    pad: usize,
    rng: Rng,
    /// Prompt + generated ids, for the repetition penalty (empty when the penalty is off).
    history: Vec<u32>,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    finish: Option<FinishReason>,
}

impl<B: Backend> std::fmt::Debug for Generator<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("vocab_size", &self.model.vocab_size())
            .field("tokenizer", &self.tokenizer.is_some())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<'a, B: Backend> Generator<'a, B> {
    /// A generator for `model` with a validated `config`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an invalid config.
    pub fn new(model: &'a (impl CausalLm<B> + Sync), config: GenerationConfig) -> Result<Self> {
        config.validate()?;
        let sampler = Sampler::new(config.sampler.clone())?;
        Ok(Self {
            model,
            tokenizer: None,
            config,
            sampler,
        })
    }

    /// Uses `tokenizer` to decode the responses' text and to match stop strings.
    pub fn with_tokenizer(mut self, tokenizer: &'a Tokenizer) -> Self {
        self.tokenizer = Some(tokenizer);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &GenerationConfig {
        &self.config
    }

    /// Generates `K` responses for each prompt; prompt `i` uses RNG stream `i`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty prompt list entry or a token id outside the
    /// vocabulary; [`Error::MissingTokenizer`] when stop strings are set without a tokenizer.
    pub fn generate(&self, prompts: &[Vec<u32>]) -> Result<GenerationOutput> {
        let streams: Vec<u64> = (0..prompts.len() as u64).collect();
        self.generate_with_progress(prompts, &streams, |_| {})
    }

    /// Like [`Generator::generate`], with an explicit RNG stream id per prompt (e.g. the
    /// prompt's index in the whole dataset, so results do not depend on how prompts are batched
    /// or split across calls) and a progress callback.
    ///
    /// # Errors
    /// As [`Generator::generate`], plus [`Error::InvalidInput`] when `streams` and `prompts`
    /// differ in length.
    pub fn generate_with_progress(
        &self,
        prompts: &[Vec<u32>],
        streams: &[u64],
        progress: impl FnMut(&Progress) + Send,
    ) -> Result<GenerationOutput> {
        if streams.len() != prompts.len() {
            return Err(Error::InvalidInput(format!(
                "{} prompts but {} RNG stream ids",
                prompts.len(),
                streams.len()
            )));
        }
        let vocab = self.model.vocab_size();
        for (i, p) in prompts.iter().enumerate() {
            if p.is_empty() {
                return Err(Error::InvalidInput(format!("prompt {i} has no tokens")));
            }
            if let Some(&bad) = p.iter().find(|&&t| t as usize >= vocab) {
                return Err(Error::InvalidInput(format!(
                    "prompt {i}: token id {bad} is outside the model's vocabulary of {vocab}"
                )));
            }
        }
        let stop = StopCriteria::new(
            &self.config.stop_token_ids,
            &self.config.stop_strings,
            self.config.max_new_tokens,
            self.tokenizer,
        )?;
        let start = Instant::now();
        let k = self.config.num_responses;
        let mut stats = GenerationStats {
            prompts: prompts.len(),
            responses: prompts.len() * k,
            ..Default::default()
        };
        let shared = Shared {
            total_responses: stats.responses,
            finished: AtomicUsize::new(0),
            generated: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            progress: Mutex::new(progress),
        };
        let concurrent = self.config.concurrent_batches;
        let batches = batch_ranges(prompts.len(), self.config.prompt_batch_size, concurrent);
        let mut responses = Vec::with_capacity(prompts.len());
        for wave in batches.chunks(concurrent) {
            let run = |r: &Range<usize>| {
                self.generate_chunk(
                    &prompts[r.clone()],
                    &streams[r.clone()],
                    r.start,
                    &stop,
                    &shared,
                )
            };
            let results: Vec<Result<(Vec<Row>, GenerationStats)>> = if wave.len() == 1 {
                vec![run(&wave[0])]
            } else {
                wave.par_iter().map(run).collect()
            };
            for result in results {
                let (rows, chunk_stats) = result?;
                stats.prompt_tokens += chunk_stats.prompt_tokens;
                stats.generated_tokens += chunk_stats.generated_tokens;
                stats.steps += chunk_stats.steps;
                stats.prefill_seconds += chunk_stats.prefill_seconds;
                stats.decode_seconds += chunk_stats.decode_seconds;
                stats.clamped_rows += chunk_stats.clamped_rows;
                for rows in rows.chunks(k) {
                    responses.push(
                        rows.iter()
                            .map(|r| self.finish_row(r))
                            .collect::<Result<_>>()?,
                    );
                }
            }
        }
        stats.wall_seconds = start.elapsed().as_secs_f64();
        tracing::info!(
            prompts = stats.prompts,
            responses = stats.responses,
            generated_tokens = stats.generated_tokens,
            tokens_per_second = stats.tokens_per_second(),
            "generation done"
        );
        Ok(GenerationOutput { responses, stats })
    }

    fn finish_row(&self, row: &Row) -> Result<Generation> {
        let text = match self.tokenizer {
            Some(t) => t.decode(&row.tokens, true)?,
            None => String::new(),
        };
        Ok(Generation {
            prompt_index: row.prompt,
            sample_index: row.sample,
            token_ids: row.tokens.clone(),
            text,
            logprobs: row.logprobs.clone(),
            finish_reason: row.finish.unwrap_or(FinishReason::Length),
        })
    }

    fn device(&self) -> B::Device {
        self.model.device()
    }

    /// Last-position logits of `ids` (extending `cache` when given), downloaded to the host.
    ///
    /// # Shapes
    /// - `ids`: `[rows, new]`, `mask`: `[rows, cached + new]` -> host `[rows, vocab]`
    fn last_logits(
        &self,
        ids: Tensor<B, 2, Int>,
        mask: Tensor<B, 2, Int>,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Vec<f32>> {
        let [rows, new] = ids.dims();
        let hidden = self.model.hidden_states_cached(ids, Some(mask), cache)?;
        let [_, _, h] = hidden.dims();
        let last = hidden.narrow(1, new - 1, 1).reshape([rows, h]);
        // A 2-D matmul: burn's `Linear` on `[rows, 1, h]` runs `rows` separate vector-matrix
        // products over the whole head (memory bound, ~4x slower at 32 rows on flex).
        let logits = self.model.lm_head_weight().logits(last);
        logits_to_host(logits)
    }

    /// Generates all responses of one batch of prompts; rows come back in `p * K + k` order,
    /// with the batch's counters and timings.
    fn generate_chunk<F: FnMut(&Progress) + Send>(
        &self,
        prompts: &[Vec<u32>],
        streams: &[u64],
        first_prompt: usize,
        stop: &StopCriteria,
        shared: &Shared<F>,
    ) -> Result<(Vec<Row>, GenerationStats)> {
        let mut stats = GenerationStats::default();
        let k = self.config.num_responses;
        let device = self.device();
        let vocab = self.model.vocab_size();
        let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let penalty = self.config.sampler.repetition_penalty != 1.0;
        let mut rows: Vec<Row> = Vec::with_capacity(prompts.len() * k);
        for (p, prompt) in prompts.iter().enumerate() {
            for s in 0..k {
                rows.push(Row {
                    prompt: first_prompt + p,
                    sample: s,
                    pad: width - prompt.len(),
                    rng: row_rng(self.config.sampler.seed, streams[p], s as u64),
                    history: if penalty { prompt.clone() } else { Vec::new() },
                    tokens: Vec::new(),
                    logprobs: Vec::new(),
                    finish: None,
                });
            }
        }
        stats.prompt_tokens += prompts.iter().map(Vec::len).sum::<usize>();
        if self.config.max_new_tokens == 0 {
            rows.iter_mut()
                .for_each(|r| r.finish = Some(FinishReason::Length));
            shared.finished.fetch_add(rows.len(), Ordering::Relaxed);
            return Ok((rows, stats));
        }
        // New tokens are clamped to the model's context: rows stop (finish reason `length`) at
        // `max_position_embeddings` instead of running past the positions the model knows.
        let max_pos = self.model.max_positions();
        if let Some((p, longest)) = prompts
            .iter()
            .map(Vec::len)
            .enumerate()
            .find(|&(_, l)| l >= max_pos)
        {
            return Err(Error::PromptTooLong {
                prompt: first_prompt + p,
                len: longest,
                max: max_pos,
            });
        }
        let limit = self.config.max_new_tokens.min(max_pos - width);
        if limit < self.config.max_new_tokens {
            tracing::warn!(
                prompt_tokens = width,
                max_new_tokens = self.config.max_new_tokens,
                max_position_embeddings = max_pos,
                clamped_to = limit,
                "prompt + max_new_tokens exceeds the model's max_position_embeddings: new tokens \
                 are clamped"
            );
            stats.clamped_rows += rows.len();
        }

        // Prefill each prompt once.
        let t0 = Instant::now();
        let pads: Vec<usize> = prompts.iter().map(|p| width - p.len()).collect();
        let mut ids = Vec::with_capacity(prompts.len() * width);
        for (p, &pad) in prompts.iter().zip(&pads) {
            ids.extend(std::iter::repeat_n(self.config.pad_token_id as i64, pad));
            ids.extend(p.iter().map(|&t| t as i64));
        }
        let ids =
            Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [prompts.len(), width]), &device);
        let mask = mask_tensor::<B>(&pads, width, &device);
        let mut cache = self.config.use_cache.then(|| self.model.new_cache());
        let mut logits = self.last_logits(ids, mask, cache.as_mut())?;
        if let Some(c) = cache.as_mut().filter(|_| k > 1) {
            *c = c.repeat_interleave(k);
        }
        // Batch row `i` reads host logits row `logit_row[i]` (after prefill: its prompt).
        let mut logit_row: Vec<usize> = (0..rows.len()).map(|r| r / k).collect();
        stats.prefill_seconds += t0.elapsed().as_secs_f64();
        tracing::debug!(
            prompts = prompts.len(),
            width,
            seconds = t0.elapsed().as_secs_f64(),
            "prefill done"
        );

        let t1 = Instant::now();
        let mut len = width;
        shared.active.fetch_add(rows.len(), Ordering::Relaxed);
        loop {
            // Sample one token for every active row (rows are independent: each owns its RNG
            // stream, so running them in parallel changes nothing but the wall time).
            let mut live: Vec<&mut Row> = rows.iter_mut().filter(|r| r.finish.is_none()).collect();
            let sampler = &self.sampler;
            let tokenizer = self.tokenizer;
            let done: Vec<bool> = live
                .par_iter_mut()
                .zip(logit_row.par_iter())
                .map(|(row, &lr)| -> Result<bool> {
                    let l = &logits[lr * vocab..(lr + 1) * vocab];
                    if let Some(what) = non_finite_logits(l) {
                        return Err(Error::NonFiniteLogits {
                            step: row.tokens.len() + 1,
                            prompt: row.prompt,
                            sample: row.sample,
                            what,
                        });
                    }
                    let t = sampler.sample_row(l, &row.history, &mut row.rng);
                    row.tokens.push(t.id);
                    row.logprobs.push(t.logprob);
                    if penalty {
                        row.history.push(t.id);
                    }
                    row.finish = stop.check(&row.tokens, tokenizer)?;
                    if row.finish.is_none() && row.tokens.len() >= limit {
                        row.finish = Some(FinishReason::Length);
                    }
                    Ok(row.finish.is_some())
                })
                .collect::<Result<_>>()?;
            stats.generated_tokens += done.len();
            let keep: Vec<usize> = (0..done.len()).filter(|&i| !done[i]).collect();
            stats.steps += 1;
            shared.step(done.len(), done.len() - keep.len());
            if keep.is_empty() {
                break;
            }
            if keep.len() < done.len()
                && let Some(c) = cache.as_mut()
            {
                let idx: Vec<i64> = keep.iter().map(|&i| i as i64).collect();
                let idx =
                    Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [keep.len()]), &device);
                *c = c.select(idx);
            }
            let active: Vec<&Row> = rows.iter().filter(|r| r.finish.is_none()).collect();
            let n = active.len();
            let pads: Vec<usize> = active.iter().map(|r| r.pad).collect();
            let mask = mask_tensor::<B>(&pads, len + 1, &device);
            let ids = if cache.is_some() {
                let last: Vec<i64> = active
                    .iter()
                    .map(|r| *r.tokens.last().unwrap_or(&0) as i64)
                    .collect();
                Tensor::<B, 2, Int>::from_data(TensorData::new(last, [n, 1]), &device)
            } else {
                let mut all = Vec::with_capacity(n * (len + 1));
                for row in &active {
                    let prompt = &prompts[row.prompt - first_prompt];
                    all.extend(std::iter::repeat_n(
                        self.config.pad_token_id as i64,
                        row.pad,
                    ));
                    all.extend(prompt.iter().chain(&row.tokens).map(|&t| t as i64));
                }
                Tensor::<B, 2, Int>::from_data(TensorData::new(all, [n, len + 1]), &device)
            };
            logits = self.last_logits(ids, mask, cache.as_mut())?;
            logit_row = (0..n).collect();
            len += 1;
            if stats.steps.is_multiple_of(64) {
                tracing::debug!(step = stats.steps, active = n, "decoding");
            }
        }
        stats.decode_seconds += t1.elapsed().as_secs_f64();
        Ok((rows, stats))
    }
}

/// State shared by the prompt batches of one `generate` call (they may run concurrently).
struct Shared<F> {
    total_responses: usize,
    finished: AtomicUsize,
    generated: AtomicUsize,
    /// Rows still decoding over the running batches.
    active: AtomicUsize,
    progress: Mutex<F>,
}

impl<F: FnMut(&Progress)> Shared<F> {
    /// Records one decoding step of a batch (`generated` tokens, `finished` rows) and reports.
    fn step(&self, generated: usize, finished: usize) {
        // The counters move under the lock, so reports reach the callback in order (concurrent
        // batches would otherwise race between counting and reporting). A panicking callback
        // poisons the lock; later reports still go through.
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let generated_tokens = self.generated.fetch_add(generated, Ordering::Relaxed) + generated;
        let finished_responses = self.finished.fetch_add(finished, Ordering::Relaxed) + finished;
        let active_rows = self.active.fetch_sub(finished, Ordering::Relaxed) - finished;
        progress(&Progress {
            finished_responses,
            total_responses: self.total_responses,
            active_rows,
            generated_tokens,
        });
    }
}

/// Cuts `n` prompts into batches of at most `size`, their number rounded up to a multiple of
/// `concurrent` (when there are enough prompts) and their sizes as equal as possible, so that
/// concurrently decoded batches finish together.
fn batch_ranges(n: usize, size: usize, concurrent: usize) -> Vec<Range<usize>> {
    if n == 0 {
        return Vec::new();
    }
    let count = n.div_ceil(size).next_multiple_of(concurrent).min(n);
    let (base, extra) = (n / count, n % count);
    let mut start = 0;
    (0..count)
        .map(|i| {
            let len = base + usize::from(i < extra);
            start += len;
            start - len..start
        })
        .collect()
}

/// `[rows, len]` attention mask: `pads[i]` zeros then ones.
fn mask_tensor<B: Backend>(pads: &[usize], len: usize, device: &B::Device) -> Tensor<B, 2, Int> {
    let mut m = Vec::with_capacity(pads.len() * len);
    for &pad in pads {
        m.extend((0..len).map(|j| i64::from(j >= pad)));
    }
    Tensor::from_data(TensorData::new(m, [pads.len(), len]), device)
}

#[cfg(test)]
mod tests {
    use super::batch_ranges;

    #[test]
    fn batches_are_balanced_and_a_multiple_of_the_concurrency() {
        let sizes = |n, size, c| -> Vec<usize> {
            batch_ranges(n, size, c).iter().map(|r| r.len()).collect()
        };
        assert_eq!(sizes(32, 32, 1), vec![32]);
        assert_eq!(sizes(32, 32, 2), vec![16, 16]);
        assert_eq!(sizes(33, 16, 1), vec![11, 11, 11]);
        assert_eq!(sizes(20, 16, 2), vec![10, 10]);
        assert_eq!(sizes(100, 16, 2), vec![13, 13, 13, 13, 12, 12, 12, 12]);
        assert_eq!(sizes(3, 16, 8), vec![1, 1, 1]);
        assert_eq!(sizes(0, 16, 2), Vec::<usize>::new());
        // Contiguous and complete.
        let r = batch_ranges(100, 16, 3);
        assert_eq!(r.first().unwrap().start, 0);
        assert_eq!(r.last().unwrap().end, 100);
        assert!(r.windows(2).all(|w| w[0].end == w[1].start));
    }
}
