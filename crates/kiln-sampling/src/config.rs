//! Typed sampling and generation configuration.
//!
//! [`SamplerConfig`] says how one next token is drawn from a logits row; [`GenerationConfig`] says
//! how many tokens, how many responses per prompt and when to stop. Both are burn `Config`s
//! (builder `with_*` methods, JSON save/load) and are checked by `validate`.

use burn::config::Config;

use crate::error::Error;

/// How a token is drawn from a row of logits.
///
/// The logits are processed in the order of Hugging Face `generate`:
/// 1. repetition penalty (`repetition_penalty != 1`): for every token id already present in the
///    prompt or the response so far, a positive logit is divided by the penalty and a negative one
///    multiplied by it;
/// 2. temperature: logits are divided by `temperature` (`0` means greedy: argmax, no RNG draw);
/// 3. top-k: only the `top_k` largest logits are kept;
/// 4. top-p (nucleus): only the smallest set of most likely tokens whose probability reaches
///    `top_p` is kept;
/// 5. min-p: tokens with probability below `min_p * max_probability` are removed.
///
/// The token is then drawn from the softmax of what is left, with one uniform number from the
/// row's own RNG stream (see [`crate::sampler`]).
#[derive(Config, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; `0` selects greedy decoding.
    #[config(default = 1.0)]
    pub temperature: f64,
    /// Keep only the `k` most likely tokens (`None` or `0`: no limit).
    pub top_k: Option<usize>,
    /// Nucleus threshold in `(0, 1]`; `1` disables it.
    #[config(default = 1.0)]
    pub top_p: f64,
    /// Min-p threshold in `[0, 1]` relative to the most likely token; `0` disables it.
    #[config(default = 0.0)]
    pub min_p: f64,
    /// Repetition penalty (`> 0`); `1` disables it. HF/CTRL semantics, see the type docs.
    #[config(default = 1.0)]
    pub repetition_penalty: f64,
    /// Seed of the RNG streams. The same seed gives the same tokens.
    #[config(default = 0)]
    pub seed: u64,
}

impl SamplerConfig {
    /// Greedy decoding (temperature 0).
    pub fn greedy() -> Self {
        Self::new().with_temperature(0.0)
    }

    /// Whether this config decodes greedily.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field and the valid range.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |field, value: f64, expected| {
            Err(Error::InvalidConfig {
                field,
                value: value.to_string(),
                expected,
            })
        };
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(
                "temperature",
                self.temperature,
                "a finite number >= 0 (0 = greedy)",
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p, "a number in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", self.min_p, "a number in [0, 1]");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(
                "repetition_penalty",
                self.repetition_penalty,
                "a finite number > 0 (1 = off)",
            );
        }
        Ok(())
    }
}

/// What to generate: how many responses, how long, when to stop.
#[derive(Config, Debug, PartialEq)]
pub struct GenerationConfig {
    /// The sampler.
    #[config(default = "SamplerConfig::new()")]
    pub sampler: SamplerConfig,
    /// Maximum number of generated tokens per response (the stop token included).
    #[config(default = 256)]
    pub max_new_tokens: usize,
    /// Number of responses `K` per prompt. The prompt is prefilled once and its KV cache copied.
    #[config(default = 1)]
    pub num_responses: usize,
    /// Token ids that end a response (e.g. `<|eot_id|>` and `<|end_of_text|>`). The stop token is
    /// kept in the response's `token_ids`.
    #[config(default = "Vec::new()")]
    pub stop_token_ids: Vec<u32>,
    /// Strings that end a response as soon as the decoded text contains one (needs a tokenizer).
    /// The tokens that complete the string are kept, as in HF `stop_strings`.
    #[config(default = "Vec::new()")]
    pub stop_strings: Vec<String>,
    /// Most prompts prefilled and decoded together in one batch (rows per step = batch prompts
    /// times `num_responses`); longer prompt lists are cut into batches of equal size. Results
    /// do not depend on it (RNG streams are per prompt) up to last-bit differences of the logits.
    #[config(default = 16)]
    pub prompt_batch_size: usize,
    /// Prompt batches decoded at the same time, each as one task on the rayon thread pool
    /// (the number of batches is rounded up to a multiple of this, so 32 prompts with
    /// `prompt_batch_size` 32 and 2 concurrent batches run as 2 x 16). On CPU backends set it to
    /// the number of cores: every batch then runs its whole step (attention, element-wise ops,
    /// sampling) on its own core instead of the cores idling between matmuls; at batch 32 on 2
    /// cores that is ~1.3x faster (see the `decode` bench). Keep 1 on GPU backends.
    #[config(default = 1)]
    pub concurrent_batches: usize,
    /// Decode with the KV cache (`true`) or recompute the whole sequence each step (`false`,
    /// slow; for benchmarks and cross-checks).
    #[config(default = true)]
    pub use_cache: bool,
    /// Token id written into padding positions of the prompt batch (never attended to).
    #[config(default = 0)]
    pub pad_token_id: u32,
}

impl GenerationConfig {
    /// Checks every field (the sampler included).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> crate::Result<()> {
        self.sampler.validate()?;
        let bad = |field, value: usize, expected| {
            Err(Error::InvalidConfig {
                field,
                value: value.to_string(),
                expected,
            })
        };
        if self.num_responses == 0 {
            return bad("num_responses", 0, "at least 1");
        }
        if self.prompt_batch_size == 0 {
            return bad("prompt_batch_size", 0, "at least 1");
        }
        if self.concurrent_batches == 0 {
            return bad("concurrent_batches", 0, "at least 1");
        }
        if let Some(s) = self.stop_strings.iter().find(|s| s.is_empty()) {
            return Err(Error::InvalidConfig {
                field: "stop_strings",
                value: format!("{s:?}"),
                expected: "non-empty strings",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_recipe_and_validate() {
        let c = GenerationConfig::new();
        assert_eq!(c.sampler.temperature, 1.0);
        assert_eq!(c.sampler.top_p, 1.0);
        assert_eq!(c.sampler.top_k, None);
        assert!(c.validate().is_ok());
        assert!(SamplerConfig::greedy().is_greedy());
    }

    #[test]
    fn invalid_fields_are_named() {
        let e = SamplerConfig::new().with_top_p(0.0).validate().unwrap_err();
        assert!(e.to_string().contains("top_p"), "{e}");
        let e = SamplerConfig::new()
            .with_temperature(-1.0)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("temperature"), "{e}");
        let e = GenerationConfig::new()
            .with_num_responses(0)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("num_responses"), "{e}");
        let e = GenerationConfig::new()
            .with_stop_strings(vec![String::new()])
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("stop_strings"), "{e}");
    }

    #[test]
    fn json_round_trip() {
        let c = GenerationConfig::new()
            .with_sampler(SamplerConfig::new().with_top_k(Some(5)).with_seed(9))
            .with_stop_token_ids(vec![2, 5]);
        let back: GenerationConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).expect("round trip");
        assert_eq!(back, c);
    }
}
