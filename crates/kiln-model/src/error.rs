//! Errors of kiln-model: every checkpoint error names the file and, where one applies, the tensor.

use std::path::PathBuf;

/// Errors raised while reading configs and checkpoints or saving models.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// `config.json` is malformed, misses a required key or holds an unsupported value.
    #[error("{path}: bad config: {message}")]
    Config {
        /// The config file (or `<memory>` for a config built in code).
        path: PathBuf,
        /// What is wrong (serde_json messages include line and column).
        message: String,
    },
    /// The model expects a tensor that the checkpoint does not have.
    #[error("{file}: missing tensor `{tensor}`")]
    MissingTensor {
        /// The checkpoint file (or index) that was searched.
        file: PathBuf,
        /// The Hugging Face tensor name.
        tensor: String,
    },
    /// The checkpoint holds a tensor that no module of the model uses.
    #[error("{file}: unexpected tensor `{tensor}` (not used by this model)")]
    UnexpectedTensor {
        /// The checkpoint file holding the tensor.
        file: PathBuf,
        /// The Hugging Face tensor name.
        tensor: String,
    },
    /// A tensor has a different shape than the config implies.
    #[error("{file}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The checkpoint file holding the tensor.
        file: PathBuf,
        /// The Hugging Face tensor name.
        tensor: String,
        /// Shape implied by the config (Hugging Face layout).
        expected: Vec<usize>,
        /// Shape stored in the file.
        found: Vec<usize>,
    },
    /// A tensor is stored in a dtype other than f32, f16 or bf16.
    #[error("{file}: tensor `{tensor}` has unsupported dtype {dtype} (supported: F32, F16, BF16)")]
    UnsupportedDtype {
        /// The checkpoint file holding the tensor.
        file: PathBuf,
        /// The Hugging Face tensor name.
        tensor: String,
        /// The dtype found, as safetensors spells it.
        dtype: String,
    },
    /// A safetensors file or index is truncated or otherwise corrupt.
    #[error("{file}: corrupt or truncated checkpoint: {message}")]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// The parser's description of the problem.
        message: String,
    },
    /// A safetensors file could not be written.
    #[error("{file}: cannot write safetensors: {message}")]
    Save {
        /// The file being written.
        file: PathBuf,
        /// The serializer's description of the problem.
        message: String,
    },
}

/// Result type of kiln-model.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Config {
            path: path.into(),
            message: message.into(),
        }
    }
}
