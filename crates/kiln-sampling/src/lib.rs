//! kiln-sampling: batched KV-cache generation with seeded samplers, K responses per prompt.
//!
//! **Skeleton.** This crate is planned (see `docs/ARCHITECTURE.md`) and currently exports only its
//! error type.

pub mod error;

pub use error::{Error, Result};
