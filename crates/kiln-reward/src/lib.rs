//! kiln-reward: reward models: the RewardModel trait, a Llama Bradley-Terry reward model, a pairwise preference model and rule-based rewards.
//!
//! **Skeleton.** This crate is planned (see `docs/ARCHITECTURE.md`) and currently exports only its
//! error type.

pub mod error;

pub use error::{Error, Result};
