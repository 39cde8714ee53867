//! Errors of kiln-reward.

use std::path::PathBuf;

/// Everything that can go wrong in kiln-reward.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Bad input (empty response list, a tokenizer that does not fit the model, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A reward model produced a NaN or infinite score: annotation stops instead of ranking on it.
    #[error(
        "non-finite reward {value} for response {response} of prompt {index} ({prompt:?}); the \
         reward model (or its checkpoint) is broken"
    )]
    NonFiniteReward {
        /// 0-based index of the record (prompt) in the input.
        index: usize,
        /// The prompt's text (shortened to 80 characters).
        prompt: String,
        /// 0-based index of the response within the record.
        response: usize,
        /// The score.
        value: f32,
    },
    /// A configuration value is out of range.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// An error from kiln-model (checkpoint I/O).
    #[error(transparent)]
    Model(#[from] kiln_model::Error),
    /// An error from kiln-data (tokenisation, chat template, collation).
    #[error(transparent)]
    Data(#[from] kiln_data::Error),
}

/// Result alias for kiln-reward.
pub type Result<T> = std::result::Result<T, Error>;
