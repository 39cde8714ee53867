//! Qwen2 (`model_type: "qwen2"`, Qwen2 and Qwen2.5 checkpoints): the second architecture behind
//! the model traits.
//!
//! Qwen2 is the Llama decoder with biases on the query, key and value projections (transformers
//! derives it from Llama in `modular_qwen2.py`), its own `config.json` conventions (no
//! `attention_bias` key, `use_sliding_window`, large `rope_theta`, tied embeddings on the small
//! sizes) and its own `architectures` names. [`Qwen2ForCausalLM`] and
//! [`Qwen2ForSequenceClassification`] are types of their own: they load only `qwen2`
//! checkpoints (a Llama loader refuses them, naming the type to use), save `Qwen2For*`
//! configs, and implement [`CausalLm`](crate::CausalLm) / [`SequenceScorer`](crate::SequenceScorer)
//! / [`HfModel`](crate::HfModel), so the generator, every trainer and the reward models take them
//! unchanged. Computation is shared with Llama through [`LlamaModel`](crate::LlamaModel), whose
//! projections carry the biases when the config's [`ModelType`](crate::ModelType) says so.
//!
//! Parity with transformers' `Qwen2ForCausalLM` (logits, greedy generation, PEFT adapters) is
//! tested on `tests/fixtures/qwen2` (made by `scripts/make_qwen2_fixtures.py`).

mod causal_lm;
mod classifier;

pub use causal_lm::Qwen2ForCausalLM;
pub use classifier::Qwen2ForSequenceClassification;
