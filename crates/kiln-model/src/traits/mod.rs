//! What a model must offer to be generated from, trained and used as a reward model.
//!
//! Generation (`kiln-sampling`), every trainer (`kiln-train`) and the reward models
//! (`kiln-reward`) are generic over these traits, not over Llama's types: a second architecture
//! plugs in by implementing them (see [`Qwen2ForCausalLM`](crate::Qwen2ForCausalLM)), without
//! forking the crates. Llama is the reference implementation.
//!
//! - [`CausalLm`]: final hidden states with an optional KV cache, the LM head's weight, the
//!   vocabulary, the context length, the device and a new cache. Logits and `forward` follow.
//! - [`LogProbs`] (implemented for every [`CausalLm`]): the log-prob helpers the trainers use,
//!   chunked so the `[batch, seq, vocab]` logits never exist.
//! - [`SequenceScorer`]: a score per position and, from it, one per sequence read at the last
//!   non-pad token (a reward model).
//! - [`HfModel`]: loading and saving Hugging Face directories, PEFT adapters included (one
//!   function for a checkpoint, base + adapters, or adapters over `base_model_name_or_path`).
//! - [`Adapters`]: LoRA adapters (attach, drop, merge, save, load).

mod adapters;
mod causal_lm;
mod hf_model;
mod scorer;

pub use adapters::Adapters;
pub use causal_lm::CausalLm;
pub(crate) use hf_model::load_dir;
pub use hf_model::{HfModel, has_adapter_files, resolve_model_dir};
pub use scorer::SequenceScorer;

pub use crate::logprobs::LogProbs;
