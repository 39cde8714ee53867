//! LoRA (low-rank adaptation) for the Llama models, compatible with PEFT.
//!
//! - [`LoraConfig`] (rank, alpha, dropout, rsLoRA, [`LoraTarget`]s) and [`LoraAdapter`], the
//!   update `scaling * B A dropout(x)` that a [`Projection`](crate::projection::Projection) adds to
//!   its frozen base weight.
//! - On [`LlamaForCausalLM`](crate::LlamaForCausalLM) and
//!   [`LlamaForSequenceClassification`](crate::LlamaForSequenceClassification): `with_lora`
//!   (PEFT init, base frozen; the classifier's `score` head stays trainable),
//!   `without_adapters` (the base model, e.g. DPO's reference), `merge_adapters` (fold into the
//!   weights for a plain HF checkpoint), `has_adapters`, `lora_config`, `num_adapter_params`.
//! - PEFT's format: `save_adapter` / `load_adapter` (`adapter_config.json` +
//!   `adapter_model.safetensors`), [`AdapterConfig`] for the JSON.

mod adapter;
mod attach;
mod config;
mod peft;
mod peft_config;
mod target;

pub use adapter::LoraAdapter;
pub use config::LoraConfig;
pub use peft::{lora_key, module_path};
pub use peft_config::{
    ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, AdapterConfig, PEFT_KEY_PREFIX, PeftTaskType,
};
pub use target::{LoraTarget, parse_target_list, parse_targets};
