//! What generation returns: one [`Generation`] per response, plus timing statistics.

use serde::{Deserialize, Serialize};

pub use kiln_data::FinishReason;

/// One generated response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Index of the prompt in the input list.
    pub prompt_index: usize,
    /// Which of the `K` responses to that prompt (`0..K`).
    pub sample_index: usize,
    /// Generated ids, including the stop token when one ended the response.
    pub token_ids: Vec<u32>,
    /// `token_ids` decoded without special tokens (empty when the generator has no tokenizer).
    pub text: String,
    /// Per-token log-prob of each generated id under the sampling distribution (see
    /// [`crate::sampler`]); same length as `token_ids`.
    pub logprobs: Vec<f32>,
    /// Why the response ended.
    pub finish_reason: FinishReason,
}

impl Generation {
    /// Sum of [`Generation::logprobs`].
    pub fn total_logprob(&self) -> f64 {
        self.logprobs.iter().map(|&x| x as f64).sum()
    }
}

/// Counters and timings of one `generate` call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    /// Number of prompts.
    pub prompts: usize,
    /// Number of responses (`prompts * K`).
    pub responses: usize,
    /// Prompt tokens prefilled (each prompt once, padding excluded).
    pub prompt_tokens: usize,
    /// Tokens generated over all responses.
    pub generated_tokens: usize,
    /// Decoding steps run (summed over prompt batches).
    pub steps: usize,
    /// Seconds spent in prefill forwards (summed over prompt batches: with concurrent batches
    /// the sum can exceed the wall time).
    pub prefill_seconds: f64,
    /// Seconds spent in decoding steps, forward + sampling (summed like `prefill_seconds`).
    pub decode_seconds: f64,
    /// Wall-clock seconds of the whole call.
    #[serde(default)]
    pub wall_seconds: f64,
    /// Rows whose new tokens were clamped so that prompt + response fit the model's
    /// `max_position_embeddings` (a warning is logged too).
    #[serde(default)]
    pub clamped_rows: usize,
}

impl GenerationStats {
    /// Generated tokens per wall-clock second (per second of prefill + decode time when the
    /// wall time is not recorded).
    pub fn tokens_per_second(&self) -> f64 {
        let t = if self.wall_seconds > 0.0 {
            self.wall_seconds
        } else {
            self.prefill_seconds + self.decode_seconds
        };
        if t > 0.0 {
            self.generated_tokens as f64 / t
        } else {
            0.0
        }
    }

    /// Adds the counters of a call that ran at the same time (another shard of the prompts):
    /// counts and the per-phase seconds add up, the wall time is the longer one.
    pub fn merge(&mut self, other: &GenerationStats) {
        self.prompts += other.prompts;
        self.responses += other.responses;
        self.prompt_tokens += other.prompt_tokens;
        self.generated_tokens += other.generated_tokens;
        self.steps = self.steps.max(other.steps);
        self.prefill_seconds += other.prefill_seconds;
        self.decode_seconds += other.decode_seconds;
        self.wall_seconds = self.wall_seconds.max(other.wall_seconds);
        self.clamped_rows += other.clamped_rows;
    }
}

/// Everything one `generate` call returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationOutput {
    /// `responses[p][k]`: response `k` of prompt `p`.
    pub responses: Vec<Vec<Generation>>,
    /// Counters and timings.
    pub stats: GenerationStats,
}

/// A progress report, emitted after every decoding step of every prompt batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Responses finished so far (over all chunks).
    pub finished_responses: usize,
    /// Total responses to generate.
    pub total_responses: usize,
    /// Rows still decoding in the batches being decoded.
    pub active_rows: usize,
    /// Tokens generated so far (over all chunks).
    pub generated_tokens: usize,
}
