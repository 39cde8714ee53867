//! Errors of kiln-sampling.

/// Everything that can go wrong in kiln-sampling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for kiln-sampling.
pub type Result<T> = std::result::Result<T, Error>;
