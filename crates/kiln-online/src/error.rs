//! Errors of kiln-online: every crate's error, and the loop's own.

use std::path::PathBuf;

/// Everything that can go wrong in one online iteration or an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is out of range.
    #[error("invalid online-loop config: {0}")]
    InvalidConfig(String),
    /// Input that cannot be used (a stage output that was not declared or not written, values
    /// of different lengths for a statistic).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A run was stopped at a stage boundary by its hook (cancellation, or a simulated kill in
    /// tests); rerunning resumes there.
    #[error("stage `{stage}` in {dir} interrupted: {reason}")]
    Interrupted {
        /// The stage directory.
        dir: PathBuf,
        /// The stage.
        stage: String,
        /// Why (the hook's words).
        reason: String,
    },
    /// kiln-model (checkpoints, adapters).
    #[error(transparent)]
    Model(#[from] kiln_model::Error),
    /// kiln-data (records, tokenisation, selection).
    #[error(transparent)]
    Data(#[from] kiln_data::Error),
    /// kiln-sampling (generation).
    #[error(transparent)]
    Sampling(#[from] kiln_sampling::Error),
    /// kiln-reward (annotation).
    #[error(transparent)]
    Reward(#[from] kiln_reward::Error),
    /// kiln-train (training, stages, statistics).
    #[error(transparent)]
    Train(#[from] kiln_train::Error),
    /// kiln-losses (loss configuration).
    #[error(transparent)]
    Loss(#[from] kiln_losses::Error),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for kiln-online.
pub type Result<T> = std::result::Result<T, Error>;
