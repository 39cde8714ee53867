//! kiln-model (skeleton: being built).

pub mod error;

pub use error::{Error, Result};
