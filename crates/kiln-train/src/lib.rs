//! kiln-train: the optimiser loop and the SFT, reward-model, DPO and RRHF trainers, with resumable checkpoints.
//!
//! **Skeleton.** This crate is planned (see `docs/ARCHITECTURE.md`) and currently exports only its
//! error type.

pub mod error;

pub use error::{Error, Result};
