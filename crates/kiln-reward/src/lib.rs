//! kiln-reward: reward models for annotating generations.
//!
//! - [`RewardModel`]: score a batch of `(prompt, response)` items, one `f32` each
//!   ([`Prompt`] = `kiln_data::Content`, text or chat messages).
//! - [`ClassifierRewardModel`]: any sequence classifier (`kiln_model::SequenceScorer`: backbone +
//!   `score` head) with the checkpoint's chat template, score read at the last real token; loads
//!   and saves HF directories (adapters included). [`LlamaRewardModel`] is the Llama one.
//! - [`PairwisePreferenceModel`]: any causal LM (`kiln_model::CausalLm`) asked `[CONTEXT] .. [RESPONSE A] .. [RESPONSE B] ..`,
//!   `P(A)` from the `A`/`B` logits averaged over both orders; K responses scored by pairwise wins.
//! - [`Annotator`]: a run's annotator loaded from a directory ([`AnnotatorKind`]: BT or pairwise;
//!   the directory's own tokenizer and template, else the run's), with evaluation's proxy scores;
//!   [`load_annotator`] picks the architecture (Llama or Qwen2) from the directory's `model_type`.
//! - Rule-based rewards: every closure `Fn(&Prompt, &str) -> f32` is a [`RewardModel`];
//!   [`rules::LengthPenalty`] subtracts `lambda * len` (characters or tokens).
//! - [`normalize`]: z-scores, min-max, per-prompt centering, running statistics.
//! - [`annotate`]: the annotate stage (`K` generations per prompt -> annotated records), with
//!   non-finite scores reported by prompt.
//!
//! # Example
//! ```
//! use kiln_data::LengthUnit;
//! use kiln_reward::rules::LengthPenalty;
//! use kiln_reward::{Prompt, RewardModel};
//!
//! // A rule-based reward: count polite words, then penalise length per character.
//! let polite = |_: &Prompt, r: &str| r.matches("please").count() as f32;
//! let rm = LengthPenalty::new(polite, 0.01, LengthUnit::Chars, None)?;
//! let prompt = Prompt::from("Ask me nicely.");
//! let scores = rm.score_responses(&prompt, &["please".into(), "no".into()])?;
//! assert!(scores[0] > scores[1]);
//! # Ok::<(), kiln_reward::Error>(())
//! ```

pub mod annotate;
pub mod annotator;
pub mod classifier;
pub mod error;
pub mod model;
pub mod normalize;
pub mod pairwise;
pub mod rules;

pub use annotator::{Annotator, AnnotatorKind, AnyAnnotator, load_annotator};
pub use classifier::{ClassifierRewardModel, LlamaRewardModel, score_token_rows};
pub use error::{Error, Result};
pub use model::{Prompt, RewardModel};
pub use pairwise::PairwisePreferenceModel;
