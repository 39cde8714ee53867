//! kiln-model: Llama-3 (and Qwen2) in burn, with Hugging Face checkpoint loading/saving and logit
//! parity.
//!
//! - [`DecoderConfig`]: HF `config.json` (old `rope_theta`/`rope_scaling` keys and transformers-5
//!   `rope_parameters`), presets ([`DecoderConfig::llama3_8b`], [`DecoderConfig::llama3_1_8b`],
//!   [`DecoderConfig::llama3_2_1b`], [`DecoderConfig::llama3_2_3b`]) and [`DecoderConfig::tiny`].
//! - Modules (burn `Module`s, generic over `B: Backend`): [`rms_norm::LlamaRmsNorm`] (f32
//!   statistics like HF), [`rope`] (rotate-half with `llama3` frequency scaling),
//!   [`attention::LlamaAttention`] (grouped-query), [`mlp::LlamaMlp`] (SwiGLU),
//!   [`layer::LlamaDecoderLayer`], [`LlamaModel`], [`LlamaForCausalLM`] (tied or untied head) and
//!   [`LlamaForSequenceClassification`] (reward head read at the last non-pad token, like HF).
//! - Padding: every forward takes an optional `[batch, len]` 0/1 attention mask (left or right
//!   padding). Positions are `cumsum(mask) - 1`, so a left-padded row gives the same logits as
//!   the unpadded sequence.
//! - Generation: [`KvCache`] with [`CausalLm::forward_cached`]; prefill once, then
//!   [`KvCache::repeat_interleave`] for `K` samples per prompt.
//! - Checkpoints: [`LlamaForCausalLM::from_pretrained`] /
//!   [`LlamaForSequenceClassification::from_pretrained`] read `config.json` + `model.safetensors`
//!   or sharded `model.safetensors.index.json` (f32/f16/bf16, memory-mapped, cast to the backend
//!   float type); `save_pretrained` writes the same layout ([`SaveOptions`]: dtype, shard size),
//!   which `transformers` loads with identical logits. Errors ([`Error`]) name file and tensor.
//! - Model traits ([`traits`]): [`CausalLm`] (hidden states with an optional cache, the LM
//!   head's weight, vocabulary, context length, device, new cache; logits and `forward` follow)
//!   and [`SequenceScorer`] (a score per sequence). Generation, every trainer and the reward
//!   models are generic over them; Llama is the reference implementation.
//! - Log-probs ([`logprobs`]): the next-token shift done once ([`sequence_logprobs`]), the LM head's
//!   chunked log-probs ([`ChunkedLogProbs`]), and helpers for every [`CausalLm`] ([`LogProbs`]):
//!   `next_token_logprobs`, `label_logprobs`, `sequence_logprobs` (chunked
//!   `logit[label] - logsumexp` without autodiff: the `[batch, seq, vocab]` logits never exist),
//!   `sequence_logprob_loss` (training: the same chunked values with gradients computed by
//!   hand, see [`ChunkedLogProbs`]).
//! - LoRA ([`lora`]): adapters on any of the seven projections ([`LoraTarget`]) with rank, alpha,
//!   dropout and rsLoRA ([`LoraConfig`]); `with_lora` (PEFT init, base frozen through burn's
//!   require-grad flag, so gradients and optimiser state exist only for the adapters and, on the
//!   classifier, the `score` head), `without_adapters` (the base: DPO's reference without a second
//!   model), `merge_adapters` (then `save_pretrained` writes a plain HF checkpoint), and
//!   `save_adapter` / `load_adapter` in PEFT's format. Parity with `peft` is tested on
//!   `tests/fixtures/lora` (made by `scripts/make_lora_fixtures.py`): ~2e-6 max-abs in both
//!   directions.
//!
//! Parity with transformers is tested on tiny random checkpoints in `tests/fixtures/model`
//! (made by `scripts/make_model_fixtures.py`): max-abs logit error ~2e-6 in f32.
//!
//! # Example: load a checkpoint and compute log-probs
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::{Int, Tensor};
//! use kiln_model::prelude::*;
//! use kiln_model::{LlamaForCausalLM, LogProbReduction};
//!
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/model/untied-gqa");
//! let device = Default::default();
//! let model = LlamaForCausalLM::<Flex>::from_pretrained(dir, &device)?;
//!
//! // Two sequences, the first left-padded; the last two tokens of each are the completion.
//! let ids = Tensor::<Flex, 2, Int>::from_data([[0, 0, 11, 12, 13, 14], [21, 22, 23, 24, 25, 26]], &device);
//! let mask = Tensor::<Flex, 2, Int>::from_data([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]], &device);
//! let logits = model.forward(ids.clone(), Some(mask.clone()))?;
//! assert_eq!(logits.dims(), [2, 6, 256]);
//!
//! let completion = Tensor::<Flex, 2>::from_data([[0.0, 0.0, 0.0, 0.0, 1.0, 1.0]; 2], &device);
//! let logp = model.sequence_logprobs(ids, Some(mask), completion, LogProbReduction::Sum)?;
//! let logp = logp.into_data().to_vec::<f32>().unwrap();
//! assert!(logp.iter().all(|&x| x < 0.0));
//! # Ok::<(), kiln_model::Error>(())
//! ```
//!
//! # Example: incremental decoding with a KV cache
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::{Int, Tensor};
//! use kiln_model::{CausalLm, DecoderConfig, LlamaForCausalLM};
//!
//! let device = Default::default();
//! let model = LlamaForCausalLM::<Flex>::init(&DecoderConfig::tiny(64, 32), 0.1, &device);
//! let prompt = Tensor::<Flex, 2, Int>::from_data([[0, 5, 6], [7, 8, 9]], &device);
//! let mut mask = Tensor::<Flex, 2, Int>::from_data([[0, 1, 1], [1, 1, 1]], &device);
//! let mut cache = model.new_cache();
//! let logits = model.forward_cached(prompt, Some(mask.clone()), &mut cache)?; // prefill
//! // Two samples per prompt: rows [p0, p0, p1, p1].
//! let mut cache = cache.repeat_interleave(2);
//! mask = Tensor::cat(vec![mask.clone(), mask], 1).reshape([2, 2, 3]).reshape([4, 3]);
//! let mut next: Tensor<Flex, 2, Int> = Tensor::from_data([[1], [2], [3], [4]], &device);
//! for _ in 0..3 {
//!     mask = Tensor::cat(vec![mask, Tensor::ones([4, 1], &device)], 1);
//!     let step = model.forward_cached(next, Some(mask.clone()), &mut cache)?; // [4, 1, vocab]
//!     next = step.argmax(2).reshape([4, 1]);
//! }
//! assert_eq!(cache.len(), 6);
//! # let _ = logits;
//! # Ok::<(), kiln_model::Error>(())
//! ```

//! # Example: LoRA fine-tuning, DPO's reference, PEFT adapters
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::module::AutodiffModule;
//! use burn::tensor::{Int, Tensor};
//! use kiln_model::{CausalLm, DecoderConfig, LlamaForCausalLM, LoraConfig, LoraTarget};
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! let base = LlamaForCausalLM::<B>::init(&DecoderConfig::tiny(64, 32), 0.1, &device);
//! let targets = kiln_model::lora::parse_targets("q,v,down")?;
//! let lora = LoraConfig::new(targets).with_rank(4).with_alpha(8.0);
//! let policy = base.with_lora(&lora, &device)?; // base frozen, B = 0: still computes the base
//! assert_eq!(policy.num_adapter_params(), 2 * (4 * (32 + 32) + 4 * (32 + 16) + 4 * (64 + 32)));
//!
//! // DPO's reference: the same weights with the adapters switched off (no second model).
//! let reference = policy.without_adapters().valid();
//! let ids = Tensor::<Flex, 2, Int>::from_data([[1, 2, 3, 4]], &device);
//! let _ref_logits = reference.forward(ids, None);
//!
//! // PEFT's format: adapter_config.json + adapter_model.safetensors.
//! let dir = std::env::temp_dir().join(format!("kiln-lora-doc-{}", std::process::id()));
//! policy.save_adapter(&dir)?;
//! let again = policy.without_adapters().load_adapter(&dir, &device)?;
//! assert_eq!(again.lora_config(), Some(&lora));
//! // A plain Hugging Face checkpoint with the update folded in:
//! let merged = again.merge_adapters();
//! assert!(!merged.has_adapters());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), kiln_model::Error>(())
//! ```

pub mod attention;
pub mod cache;
pub mod causal_lm;
pub mod checkpoint;
pub mod classifier;
pub mod config;
pub mod config_error;
mod config_presets;
pub mod dtype;
pub mod error;
pub mod layer;
pub mod linear;
pub mod logprobs;
pub mod lora;
pub mod mask;
pub mod mlp;
pub mod model;
pub mod model_type;
pub mod projection;
pub mod qwen2;
pub mod readback;
pub mod rms_norm;
pub mod rope;
pub mod traits;
mod weights;

/// The model traits, for `use kiln_model::prelude::*;`.
pub mod prelude {
    pub use crate::traits::{Adapters, CausalLm, HfModel, LogProbs, SequenceScorer};
}

pub use cache::{KvCache, LayerKv};
pub use causal_lm::LlamaForCausalLM;
pub use checkpoint::{
    ALLOW_NON_FINITE_ENV, CheckpointReader, LoadDtype, LoadOptions, MissingScore, SaveDtype,
    SaveOptions, check_backend_dtype,
};
pub use classifier::LlamaForSequenceClassification;
pub use config::{DecoderConfig, Llama3RopeScaling};
pub use config_error::ConfigError;
pub use error::{Error, Result};
pub use logprobs::{
    ChunkedLogProbs, ChunkedLogProbsConfig, LmHead, LogProbReduction, LogProbStrategy,
    full_sequence_logprobs, gather_logprobs, sequence_logprobs, shifted_token_logprobs,
};
pub use lora::{AdapterConfig, LoraConfig, LoraTarget, PeftTaskType};
pub use model::LlamaModel;
pub use model_type::ModelType;
pub use qwen2::{Qwen2ForCausalLM, Qwen2ForSequenceClassification};
pub use readback::read_f32;
pub use traits::{Adapters, CausalLm, HfModel, LogProbs, SequenceScorer};
