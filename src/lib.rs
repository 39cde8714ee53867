//! Kiln: online iterative RLHF for Llama-3 on burn.
//!
//! This facade re-exports the Kiln crates under short names and owns the choice of backend
//! (cargo features `flex` (default, CPU), `cuda`, `tch`). Library crates stay generic over
//! `B: Backend`; pick a concrete backend from [`backend`] in your binary.
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`model`] | `kiln-model` | Llama-3 in burn, Hugging Face checkpoint I/O |
//! | [`losses`] | `kiln-losses` | DPO family, Bradley-Terry, RRHF, log-probs |
//! | [`reward`] | `kiln-reward` | reward models |
//! | [`sampling`] | `kiln-sampling` | batched generation |
//! | [`data`] | `kiln-data` | tokenizer, chat template, JSONL stage formats, pairs, batching |
//! | [`train`] | `kiln-train` | optimiser loop, trainers, checkpoints |
//!
//! [`Error`] / [`Result`] take every crate's error with `?`, for programs that use several.
//!
//! [`malloc::keep_freed_memory`] tunes glibc's allocator for tensor workloads (the examples call it).
//!
//! # Example
//! ```
//! use kiln::backend::{AutodiffCpu, Cpu};
//! use kiln::burn::tensor::Tensor;
//! use kiln::losses::{DpoConfig, DpoLoss};
//!
//! let device = Default::default();
//! let dpo = DpoConfig::new().with_loss(DpoLoss::Ipo).init()?;
//! let x = Tensor::<AutodiffCpu, 1>::from_floats([-3.0, -4.0], &device);
//! let out = dpo.forward(x.clone(), x.clone() - 1.0, x.clone(), x);
//! # let _ = std::marker::PhantomData::<Cpu>;
//! assert!(out.loss.into_scalar() >= 0.0);
//! # Ok::<(), kiln::losses::Error>(())
//! ```

pub mod backend;
pub mod error;
pub mod malloc;

pub use error::{Error, Result};

/// The downstream guide (`docs/GUIDE.md`); its code blocks are compiled and run as doc tests.
#[doc = include_str!("../docs/GUIDE.md")]
pub mod guide {}

pub use burn;
pub use kiln_data as data;
pub use kiln_losses as losses;
pub use kiln_model as model;
pub use kiln_online as online;
pub use kiln_reward as reward;
pub use kiln_sampling as sampling;
pub use kiln_train as train;
