//! Errors of kiln-train.

use std::path::PathBuf;

/// Everything that can go wrong in kiln-train.
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
    /// The loss of a micro-batch was NaN or infinite: training stops.
    #[error("non-finite loss {value} at optimiser step {step} (micro-batch {micro_batch})")]
    NonFiniteLoss {
        /// The 1-based optimiser step that was being computed.
        step: usize,
        /// Index of the micro-batch within that step.
        micro_batch: usize,
        /// The offending loss value.
        value: f64,
    },
    /// The global gradient norm was NaN or infinite although the loss was finite.
    #[error("non-finite gradient norm {value} at optimiser step {step}")]
    NonFiniteGradient {
        /// The 1-based optimiser step.
        step: usize,
        /// The norm.
        value: f64,
    },
    /// A peer thread of this process panicked while doing `what` (generation, scoring, ...):
    /// the whole stage fails, nothing is written.
    #[error("a peer thread panicked while {what}; the stage wrote nothing (rerun to resume)")]
    PeerPanicked {
        /// The work the thread was doing.
        what: String,
    },
    /// The collective engine of a data-parallel run failed (a peer left, a timeout).
    #[error("data-parallel collective: {0}")]
    Collective(String),
    /// A rank of a multi-process run stopped giving signs of life (it died, hung, never started
    /// or left early): the others stop instead of waiting in a collective call.
    #[error(
        "rank {rank} {}; this rank stops too: rerun every rank to resume after the last finished stage",
        if *left { "left the run while this rank still needed it".to_string() } else { format!("gave no sign of life for {seconds:.0} s (it died, hung or never started)") }
    )]
    PeerLost {
        /// The silent rank.
        rank: usize,
        /// The timeout that passed.
        seconds: f64,
        /// Whether it marked itself as gone.
        left: bool,
    },
    /// A configuration value is out of range.
    #[error("invalid training config: {0}")]
    InvalidConfig(String),
    /// A [`TrainLoop`](crate::TrainLoop) whose optimiser step panicked midway holds no model.
    #[error("the training loop lost its model: an earlier optimiser step panicked midway")]
    ModelLost,
    /// Bad input data (empty dataset, mismatched lengths, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A checkpoint directory is incomplete or inconsistent.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A per-step metrics log (`metrics.jsonl`) is malformed, or a step was logged out of order.
    #[error("metrics log {path}: {message}")]
    Metrics {
        /// The metrics file.
        path: PathBuf,
        /// What is wrong (with the line number for a malformed file).
        message: String,
    },
    /// An error from kiln-model (checkpoint I/O).
    #[error(transparent)]
    Model(#[from] kiln_model::Error),
    /// An error from kiln-data (tokenisation, collation).
    #[error(transparent)]
    Data(#[from] kiln_data::Error),
    /// An error from kiln-losses (loss configuration).
    #[error(transparent)]
    Loss(#[from] kiln_losses::Error),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for kiln-train.
pub type Result<T> = std::result::Result<T, Error>;
