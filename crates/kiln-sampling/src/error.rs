//! Errors of kiln-sampling.

/// Everything that can go wrong in kiln-sampling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration field holds an invalid value.
    #[error("invalid sampling config: `{field}` = {value}: {expected}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Its value, formatted.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// Bad input (empty prompt, token id outside the vocabulary, shape mismatch, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The model produced logits no token can be drawn from (a NaN or `+inf` anywhere in the row,
    /// or every logit `-inf`): generation stops instead of emitting a made-up token.
    #[error(
        "non-finite logits at decoding step {step} for prompt {prompt}, sample {sample} ({what}); \
         the model's weights or inputs are broken"
    )]
    NonFiniteLogits {
        /// 1-based decoding step (1 = the token after the prompt).
        step: usize,
        /// Index of the prompt in the `generate` call.
        prompt: usize,
        /// Index of the sample of that prompt (`0..num_responses`).
        sample: usize,
        /// What was found (`"NaN"`, `"+inf"`, `"all -inf"`).
        what: &'static str,
    },
    /// A prompt (after templating and truncation) does not leave room for one new token within
    /// the model's `max_position_embeddings`.
    #[error(
        "prompt {prompt} has {len} tokens, but the model's max_position_embeddings is {max}: \
         shorten it (or lower the truncation limit)"
    )]
    PromptTooLong {
        /// Index of the prompt.
        prompt: usize,
        /// Its length in tokens.
        len: usize,
        /// The model's context length.
        max: usize,
    },
    /// Stop strings or text output need a tokenizer, but none was given.
    #[error("{0} needs a tokenizer: pass one with `Generator::with_tokenizer`")]
    MissingTokenizer(&'static str),
    /// A tokenizer error (decoding the generated ids).
    #[error(transparent)]
    Data(#[from] kiln_data::Error),
    /// A model error.
    #[error(transparent)]
    Model(#[from] kiln_model::Error),
}

/// Result alias for kiln-sampling.
pub type Result<T> = std::result::Result<T, Error>;
