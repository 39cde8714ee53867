//! Error type of kiln-data: every problem with input data names the file, line and field.

use std::path::PathBuf;

/// Result alias used throughout kiln-data.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in kiln-data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON Lines record could not be parsed or did not match its format.
    ///
    /// Displayed as `path:line: field `f`: message` (the field part is omitted for syntax errors).
    #[error("{path}:{line}: {}{message}", field_prefix(field.as_deref()), path = path.display())]
    Record {
        /// The JSON Lines file.
        path: PathBuf,
        /// 1-based line number of the offending record.
        line: usize,
        /// Path of the offending field inside the record (e.g. `responses[2]`), when known.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A JSON Lines file contained no record at all.
    #[error("{path}:{line}: empty file: expected at least one JSON record", path = path.display())]
    EmptyFile {
        /// The empty file.
        path: PathBuf,
        /// 1-based number of the last line read (1 for a zero-byte file).
        line: usize,
    },
    /// A `tokenizer.json` could not be loaded or parsed.
    #[error("cannot load tokenizer from {source_name}: {message}")]
    TokenizerLoad {
        /// File path (or `<builtin>` / `<string>`) the tokenizer came from.
        source_name: String,
        /// The tokenizers crate's message.
        message: String,
    },
    /// Encoding, decoding or training with the `tokenizers` crate failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A special token the chat template or collator needs is not in the vocabulary.
    #[error(
        "special token `{name}` is missing from the tokenizer vocabulary (needed for {purpose})"
    )]
    MissingSpecialToken {
        /// Name of the token, e.g. `<|eot_id|>`.
        name: String,
        /// What needs it.
        purpose: String,
    },
    /// A chat template did not parse or failed while rendering.
    #[error("chat template {origin}: {message}")]
    Template {
        /// The file the template came from.
        origin: String,
        /// What went wrong (minijinja's message, with the template line when known).
        message: String,
    },
    /// A chat template called `raise_exception(message)`: it rejects the conversation.
    #[error("chat template {origin} rejected the conversation: {message}")]
    TemplateRaised {
        /// The file the template came from.
        origin: String,
        /// The template's own message.
        message: String,
    },
    /// A model directory has no chat template.
    #[error(
        "{dir} has no chat template (looked at {}); pass a template explicitly (e.g. the \
         built-in Llama-3 one) or add chat_template.jinja",
        looked_at.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        dir = dir.display()
    )]
    NoChatTemplate {
        /// The model directory.
        dir: PathBuf,
        /// The files looked at, in order.
        looked_at: Vec<PathBuf>,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Input data is unusable for the requested operation (e.g. an empty batch).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

fn field_prefix(field: Option<&str>) -> String {
    match field {
        Some(f) if !f.is_empty() => format!("field `{f}`: "),
        _ => String::new(),
    }
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
