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
