//! Errors of kiln-data.

/// Everything that can go wrong in kiln-data.
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

/// Result alias for kiln-data.
pub type Result<T> = std::result::Result<T, Error>;
