//! kiln-data: everything between raw text and tensors.
//!
//! - [`Tokenizer`]: a wrapper over the `tokenizers` crate, plus [`Tokenizer::builtin_tiny`], a small
//!   byte-level BPE with the Llama-3 special tokens trained by this crate on its own corpus.
//! - [`ChatTemplate`]: chat templates rendered to ids exactly like HF `apply_chat_template`, with
//!   assistant-token masks: a checkpoint's own Jinja template ([`ChatTemplate::from_model_dir`],
//!   rendered with minijinja in transformers' Jinja environment) or the built-in Llama-3.0 one.
//! - [`hf_files`]: what a model directory says about chat formatting (template source, special
//!   tokens, `generation_config.json` stop ids).
//! - [`formats`]: the JSON Lines stage records, read by [`JsonlReader`] and written atomically by
//!   [`JsonlWriter`].
//! - [`pairs`]: pair selection (`max_min`, ..., `max_min_p`) and ranked lists for RRHF.
//! - [`examples`] / [`truncate`] / [`collate`]: records to token sequences with loss masks,
//!   truncation, padding and tensors for generation, SFT, DPO and reward-model batches.
//! - [`split`]: deterministic shuffling, train/eval split, batch plans.
//! - [`Rng`]: the seeded generator every Kiln crate uses.
//!
//! ```
//! use kiln_data::{ChatTemplate, Message, Tokenizer};
//! let tok = Tokenizer::builtin_tiny()?;
//! let template = ChatTemplate::llama3(&tok)?;
//! let chat = template.encode(&tok, &[Message::user("What colour is the sky?")], true)?;
//! assert_eq!(chat.ids[0], tok.token_id("<|begin_of_text|>")?);
//! assert!(tok.decode(&chat.ids, false)?.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"));
//! # Ok::<(), kiln_data::Error>(())
//! ```

pub mod atomic;
pub mod chat_template;
pub mod collate;
pub mod date;
pub mod encoder;
pub mod error;
pub mod examples;
pub mod formats;
pub mod hf_files;
mod jinja;
pub mod jsonl;
pub mod message;
pub mod pairs;
pub mod rng;
pub mod selection_config;
pub mod split;
pub mod tokenizer;
pub mod train_tokenizer;
pub mod truncate;

pub use chat_template::{ChatTemplate, EncodedChat, PromptCompletion, TemplateChoice};
pub use collate::{IGNORE_INDEX, LmBatch, PaddedBatch, PairBatch};
pub use date::{DateTime, TemplateClock};
pub use encoder::ChatEncoder;
pub use error::{Error, Result};
pub use examples::Example;
pub use formats::{
    AnnotatedRecord, FinishReason, GenerationRecord, PairRecord, PromptRecord, RankedRecord,
    SftRecord,
};
pub use hf_files::TemplateSource;
pub use jinja::python_strip;
pub use jsonl::{JsonlReader, JsonlWriter, read_jsonl, write_jsonl};
pub use message::{Content, Message, Role};
pub use pairs::{LengthUnit, SelectionConfig, SelectionStats, SelectionStrategy};
pub use rng::Rng;
pub use tokenizer::Tokenizer;
pub use truncate::TruncationConfig;
