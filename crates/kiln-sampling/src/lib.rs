//! kiln-sampling: batched KV-cache generation with seeded samplers, `K` responses per prompt.
//!
//! - [`SamplerConfig`]: greedy (temperature 0), temperature, top-k, top-p, min-p, repetition
//!   penalty, seed; [`Sampler`] draws a token from a logits row and reports its log-prob under the
//!   final sampling distribution.
//! - [`GenerationConfig`] + [`Generator`]: left-padded prompt batches prefilled once, the KV cache
//!   copied for `K` responses per prompt, stop token ids and stop strings, `max_new_tokens`,
//!   finished rows dropped from the batch, progress through `tracing` and a callback.
//! - [`Generation`]: token ids (stop token included), text, per-token log-probs,
//!   [`FinishReason`].
//!
//! Reproducibility: response `k` of a prompt with stream id `s` draws from its own RNG stream
//! ([`sampler::row_rng`]`(seed, s, k)`), one uniform number per token, so the same seed gives the
//! same tokens whatever the batch composition (up to last-bit differences of the logits between
//! batch shapes). Greedy decoding equals Hugging Face `generate(do_sample=False)` token for token
//! on the fixture checkpoints.
//!
//! # Example
//!
//! ```
//! use burn::backend::Flex;
//! use kiln_model::{DecoderConfig, LlamaForCausalLM};
//! use kiln_sampling::{FinishReason, GenerationConfig, Generator, SamplerConfig};
//!
//! let device = Default::default();
//! let model = LlamaForCausalLM::<Flex>::init(&DecoderConfig::tiny(64, 32), 0.1, &device);
//! let config = GenerationConfig::new()
//!     .with_sampler(SamplerConfig::new().with_top_p(0.9).with_seed(7))
//!     .with_num_responses(3)
//!     .with_max_new_tokens(5)
//!     .with_stop_token_ids(vec![2]);
//! let out = Generator::new(&model, config)?.generate(&[vec![1, 5, 6], vec![1, 9]])?;
//! assert_eq!(out.responses.len(), 2);
//! assert_eq!(out.responses[0].len(), 3);
//! for r in out.responses.iter().flatten() {
//!     assert!(r.token_ids.len() <= 5);
//!     assert_eq!(r.logprobs.len(), r.token_ids.len());
//!     if r.finish_reason == FinishReason::StopToken {
//!         assert_eq!(r.token_ids.last(), Some(&2));
//!     }
//! }
//! # Ok::<(), kiln_sampling::Error>(())
//! ```

pub mod config;
pub mod engine;
pub mod error;
pub mod expsum;
pub mod output;
pub mod sampler;
pub mod stop;

pub use config::{GenerationConfig, SamplerConfig};
pub use engine::Generator;
pub use error::{Error, Result};
pub use output::{FinishReason, Generation, GenerationOutput, GenerationStats, Progress};
pub use sampler::{Candidates, SampledToken, Sampler, non_finite_logits, row_rng};
pub use stop::StopCriteria;
