//! [`Error`]: one error type for programs built on the Kiln crates, with `From` for each crate's.

/// Any error of the Kiln crates (or of the file system around them), so a program that uses
/// several crates can return [`Result`] and apply `?` to all of them.
///
/// Each variant keeps the crate's own error (its message names the file, line, tensor or step);
/// `Display` is that message unchanged.
///
/// ```
/// use kiln::data::Tokenizer;
/// use kiln::losses::{DpoConfig, DpoLoss};
/// use kiln::model::DecoderConfig;
///
/// fn setup() -> kiln::Result<usize> {
///     let tokenizer = Tokenizer::builtin_tiny()?; // kiln-data
///     let config = DecoderConfig::tiny(tokenizer.vocab_size(), 32);
///     config.validate()?; // kiln-model's ConfigError
///     let _dpo = DpoConfig::new().with_loss(DpoLoss::Sigmoid).init()?; // kiln-losses
///     Ok(config.num_hidden_layers)
/// }
/// assert!(setup()? > 0);
/// # Ok::<(), kiln::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// From `kiln-model`: configs, checkpoints, adapters.
    #[error(transparent)]
    Model(#[from] kiln_model::Error),
    /// From `kiln-losses`: loss configs and inputs.
    #[error(transparent)]
    Losses(#[from] kiln_losses::Error),
    /// From `kiln-reward`: reward models and annotators.
    #[error(transparent)]
    Reward(#[from] kiln_reward::Error),
    /// From `kiln-sampling`: generation.
    #[error(transparent)]
    Sampling(#[from] kiln_sampling::Error),
    /// From `kiln-data`: tokenizers, chat templates, JSON Lines, stage formats.
    #[error(transparent)]
    Data(#[from] kiln_data::Error),
    /// From `kiln-train`: trainers, the optimiser loop, stages, checkpoints.
    #[error(transparent)]
    Train(#[from] kiln_train::Error),
    /// kiln-online (the loop's parts).
    #[error(transparent)]
    Online(#[from] kiln_online::Error),
    /// A file-system error outside the crates (the path is not known here).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<kiln_model::ConfigError> for Error {
    fn from(e: kiln_model::ConfigError) -> Self {
        Error::Model(e.into())
    }
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
