//! Errors raised by loss configuration.
//!
//! `kiln-losses` depends on burn only, so this enum implements [`std::error::Error`] by hand rather
//! than through `thiserror`; its shape matches the `thiserror` enums of the other Kiln crates.

use std::fmt;

/// A loss configuration that cannot produce a meaningful loss.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A hyperparameter lies outside its valid range.
    InvalidParameter {
        /// Which loss the parameter belongs to (`"dpo"`, `"bradley_terry"`, `"rrhf"`).
        loss: &'static str,
        /// The parameter's name as it appears in the config.
        name: &'static str,
        /// The value that was given.
        value: f64,
        /// The range the value must lie in, in words.
        expected: &'static str,
    },
    /// A command-line value (e.g. `--loss cdpo:0.1`) could not be parsed.
    Parse {
        /// What was being parsed (`"DPO loss"`, `"log-prob reduction"`).
        what: &'static str,
        /// The text given.
        input: String,
        /// What is accepted, in words.
        expected: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidParameter {
                loss,
                name,
                value,
                expected,
            } => write!(
                f,
                "{loss} loss: parameter `{name}` = {value} is invalid: expected {expected}"
            ),
            Error::Parse {
                what,
                input,
                expected,
            } => write!(f, "invalid {what} `{input}`: expected {expected}"),
        }
    }
}

impl std::error::Error for Error {}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Returns an error unless `value` is finite and satisfies `ok`.
pub(crate) fn check(
    loss: &'static str,
    name: &'static str,
    value: f64,
    ok: bool,
    expected: &'static str,
) -> Result<()> {
    if value.is_finite() && ok {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            loss,
            name,
            value,
            expected,
        })
    }
}
