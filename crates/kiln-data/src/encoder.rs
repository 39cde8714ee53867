//! [`ChatEncoder`]: the tokenizer, chat template, truncation limits and pad id that every stage
//! needs to turn records into token ids, bundled so stages take one argument instead of four.
//!
//! ```
//! use kiln_data::{ChatEncoder, Content, TruncationConfig};
//! let enc = ChatEncoder::builtin_tiny(TruncationConfig { max_prompt_len: 64, max_total_len: 128 })?;
//! let prompt = Content::from("What colour is the sky?");
//! let ids = enc.generation_prompt(&prompt)?;
//! let ex = enc.prompt_completion(&prompt, &Content::from("Blue."))?;
//! assert_eq!(&ex.ids[..ids.len()], &ids[..]); // the prompt part is the generation prompt
//! assert!(ex.num_loss_tokens() > 0);
//! # Ok::<(), kiln_data::Error>(())
//! ```

use std::path::Path;

use crate::chat_template::{ChatTemplate, TemplateChoice};
use crate::date::TemplateClock;
use crate::error::Result;
use crate::examples::{
    Example, encode_generation_prompt, encode_pair, encode_prompt_completion, encode_ranked,
    encode_reward_input, encode_sft,
};
use crate::formats::{PairRecord, RankedRecord, SftRecord};
use crate::message::Content;
use crate::tokenizer::Tokenizer;
use crate::truncate::TruncationConfig;

/// Tokenizer + chat template + truncation + pad id: everything between records and ids.
#[derive(Debug, Clone)]
pub struct ChatEncoder {
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The chat template (the checkpoint's own, or the built-in Llama-3.0 one).
    pub template: ChatTemplate,
    /// Prompt and prompt + completion limits (prompts keep their end, completions their start).
    pub truncation: TruncationConfig,
    /// The padding id (the tokenizer's pad, else the template's).
    pub pad_id: u32,
}

impl ChatEncoder {
    /// Bundles a tokenizer and its template; the pad id comes from [`ChatTemplate::pad_id`].
    ///
    /// # Errors
    /// Invalid truncation limits, or no pad id.
    pub fn new(
        tokenizer: Tokenizer,
        template: ChatTemplate,
        truncation: TruncationConfig,
    ) -> Result<Self> {
        truncation.validate()?;
        let pad_id = template.pad_id(&tokenizer)?;
        Ok(ChatEncoder {
            tokenizer,
            template,
            truncation,
            pad_id,
        })
    }

    /// The built-in tiny tokenizer with the built-in Llama-3.0 template.
    ///
    /// # Errors
    /// Invalid truncation limits.
    pub fn builtin_tiny(truncation: TruncationConfig) -> Result<Self> {
        let tokenizer = Tokenizer::builtin_tiny()?;
        let template = ChatTemplate::llama3(&tokenizer)?;
        Self::new(tokenizer, template, truncation)
    }

    /// A Hugging Face model directory's `tokenizer.json` and the template `choice` names (its own
    /// by default), with `clock` for templates that print today's date.
    ///
    /// # Errors
    /// Missing tokenizer or template (the files looked at are named), invalid limits.
    pub fn from_model_dir(
        dir: impl AsRef<Path>,
        choice: &TemplateChoice,
        clock: TemplateClock,
        truncation: TruncationConfig,
    ) -> Result<Self> {
        let dir = dir.as_ref();
        let tokenizer = Tokenizer::from_model_dir(dir)?;
        let template = ChatTemplate::load(choice, Some(dir), &tokenizer)?.with_clock(clock);
        Self::new(tokenizer, template, truncation)
    }

    /// The same bundle with other truncation limits.
    ///
    /// # Errors
    /// Invalid limits.
    pub fn with_truncation(mut self, truncation: TruncationConfig) -> Result<Self> {
        truncation.validate()?;
        self.truncation = truncation;
        Ok(self)
    }

    /// Ids that end generation: `generation_config.json`'s eos ids plus the end-of-turn token.
    pub fn stop_ids(&self) -> Vec<u32> {
        self.template.stop_ids()
    }

    /// A generation prompt (template + assistant header), keeping its last `max_prompt_len` tokens.
    ///
    /// # Errors
    /// Template or tokenizer errors.
    pub fn generation_prompt(&self, prompt: &Content) -> Result<Vec<u32>> {
        encode_generation_prompt(
            &self.tokenizer,
            &self.template,
            prompt,
            self.truncation.max_prompt_len,
        )
    }

    /// `prompt + completion` with the loss mask on the completion (DPO, RRHF, evaluation).
    ///
    /// # Errors
    /// Template or tokenizer errors.
    pub fn prompt_completion(&self, prompt: &Content, completion: &Content) -> Result<Example> {
        encode_prompt_completion(
            &self.tokenizer,
            &self.template,
            prompt,
            completion,
            &self.truncation,
        )
    }

    /// Both sides of a preference pair: `(chosen, rejected)`.
    ///
    /// # Errors
    /// Template or tokenizer errors.
    pub fn pair(&self, pair: &PairRecord) -> Result<(Example, Example)> {
        encode_pair(&self.tokenizer, &self.template, pair, &self.truncation)
    }

    /// Every response of a ranked record (best first), for RRHF.
    ///
    /// # Errors
    /// Template or tokenizer errors.
    pub fn ranked(&self, record: &RankedRecord) -> Result<Vec<Example>> {
        encode_ranked(&self.tokenizer, &self.template, record, &self.truncation)
    }

    /// An SFT conversation with its assistant mask, keeping its first `max_total_len` tokens.
    ///
    /// # Errors
    /// Template errors, or no assistant token left.
    pub fn sft(&self, record: &SftRecord) -> Result<Example> {
        encode_sft(
            &self.tokenizer,
            &self.template,
            record,
            self.truncation.max_total_len,
        )
    }

    /// A reward-model input `chat(prompt + [completion])`, keeping its last `max_total_len` tokens.
    ///
    /// # Errors
    /// Template or tokenizer errors.
    pub fn reward_input(&self, prompt: &Content, completion: &Content) -> Result<Vec<u32>> {
        encode_reward_input(
            &self.tokenizer,
            &self.template,
            prompt,
            completion,
            self.truncation.max_total_len,
        )
    }

    /// A reward-model training example: the reward input with an all-false loss mask.
    ///
    /// # Errors
    /// As [`Self::reward_input`].
    pub fn reward_example(&self, prompt: &Content, completion: &Content) -> Result<Example> {
        let ids = self.reward_input(prompt, completion)?;
        Ok(Example {
            loss_mask: vec![false; ids.len()],
            ids,
        })
    }
}
