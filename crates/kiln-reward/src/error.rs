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
