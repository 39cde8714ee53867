//! kiln-train: the optimiser loop and the SFT, reward-model, DPO and RRHF trainers, with
//! resumable checkpoints.
//!
//! - [`TrainLoop`] ([`TrainConfig`]): one loop for every trainer: burn's AdamW with PyTorch
//!   defaults set explicitly, linear warmup + cosine decay ([`LrSchedule`]), **global**-norm
//!   gradient clipping ([`clip`]), gradient accumulation, a seeded data order ([`DataOrder`]),
//!   `tracing` metrics every `log_every` steps and a clear error on a NaN/inf loss.
//! - Trainers plug a loss closure into the loop; every loss comes from `kiln_losses`:
//!   [`sft`] (assistant-token NLL), [`reward`] (Bradley-Terry with margins and centering, pairwise
//!   accuracy), [`dpo`] (precomputed reference log-probs, every DPO-family loss, TRL metrics),
//!   [`rrhf`] (K ranked responses, no reference). Every trainer has one shape,
//!   `train_x(&mut loop, data, &XTrainConfig)`, the pad id and the log-prob strategy in the config
//!   ([`SftTrainConfig`], [`RewardTrainConfig`], [`DpoTrainConfig`], [`RrhfTrainConfig`]).
//! - [`checkpoint`]: the model in Hugging Face layout plus AdamW state and the step in one
//!   directory, written atomically; [`TrainLoop::resume`] continues exactly.
//! - [`TrainLoop::on_step`]: a per-step callback (progress bars, early stopping).
//! - [`metrics`]: [`MetricsLog`], every step's loss, gradient norm, learning rate and trainer
//!   metrics (TRL's names for DPO) as JSON Lines, hooked in as an `on_step` callback; resumes
//!   without duplicate steps.
//!
//! # Example
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::nn::{Linear, LinearConfig};
//! use burn::tensor::{Tensor, TensorData};
//! use kiln_train::{StepLoss, TrainConfig, TrainLoop};
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! let model: Linear<B> = LinearConfig::new(2, 1).init(&device);
//! let config = TrainConfig::new(20).with_lr(0.1).with_warmup_steps(2).with_micro_batch_size(4);
//! let mut train = TrainLoop::new(model, config)?;
//! let xs: Vec<[f32; 2]> = (0..8).map(|i| [i as f32 / 8.0, 1.0]).collect();
//! let stats = train.fit(
//!     xs.len(),
//!     20,
//!     |idx| Ok(idx.iter().flat_map(|&i| xs[i]).collect::<Vec<f32>>()),
//!     |model: &Linear<B>, batch: &Vec<f32>| {
//!         let rows = batch.len() / 2;
//!         let x = Tensor::<B, 2>::from_data(TensorData::new(batch.clone(), [rows, 2]), &device);
//!         let y = x.clone().narrow(1, 0, 1) * 3.0; // learn y = 3 x
//!         let loss = (model.forward(x) - y).square().mean();
//!         Ok(StepLoss::new(loss))
//!     },
//! )?;
//! assert_eq!(train.step(), 20);
//! assert!(stats.last().unwrap().loss < stats[0].loss);
//! # Ok::<(), kiln_train::Error>(())
//! ```

pub mod checkpoint;
pub mod clip;
pub mod dpo;
pub mod error;
pub mod metrics;
pub mod optim;
pub mod order;
pub mod parallel;
pub mod reward;
pub mod rrhf;
pub mod schedule;
pub mod sft;
pub mod train_loop;

pub use checkpoint::TrainerState;
pub use dpo::DpoTrainConfig;
pub use error::{Error, Result};
pub use kiln_model::HfModel;
pub use metrics::MetricsLog;
pub use optim::TrainConfig;
pub use order::DataOrder;
pub use parallel::{Cluster, CollectiveSync, GradSync, Launch, Placement, Team, data_parallel};
pub use reward::RewardTrainConfig;
pub use rrhf::RrhfTrainConfig;
pub use schedule::LrSchedule;
pub use sft::SftTrainConfig;
pub use train_loop::{StepCallback, StepLoss, StepStats, TrainLoop};
#[cfg(test)]
mod testutil;
