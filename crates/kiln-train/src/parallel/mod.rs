//! Data parallelism: `N` peers, each with a copy of the model, each computing the gradient of its
//! shard of every micro-batch; the gradients are averaged across peers before clipping and the
//! optimiser step, so every peer takes the same step as one peer on the whole batch.
//!
//! The engine is burn's own (burn-collective 0.21, [`CollectiveSync`]); the loop reaches it only
//! through the [`GradSync`] seam, so a later burn (whose main branch moved collectives into the
//! backends) replaces one file. [`data_parallel`] runs a training closure on `N` peers as
//! threads of this process (one per device; on a CPU they share the cores); a [`Cluster`] joins
//! several processes on one or more machines (launched with torchrun's environment, [`Launch`])
//! through burn-collective's orchestrator, and the stages of a run see its processes as a
//! [`Team`].
//!
//! Shards and weights: each micro-batch's examples are cut into `N` contiguous shards whose sizes
//! differ by at most one; a peer's loss is weighted by its share of the micro-batch's weight (the
//! examples, or for SFT the counted tokens, that the loss averages over: [`StepLoss::with_weight`]),
//! so the averaged gradient equals the whole batch's. A peer whose shard is empty (a micro-batch
//! with fewer examples than peers) runs the batch's last example with weight 0: every peer makes
//! the same collective calls. Gradients travel as one flat tensor in the model's visiting order
//! ([`flat`]), which is the same in every process.
//!
//! [`StepLoss::with_weight`]: crate::StepLoss::with_weight

mod cluster;
mod collective;
pub mod flat;
mod launch;
mod placement;
mod shard;
mod sync;
mod team;
mod watchdog;

pub use cluster::Cluster;
pub use collective::{CollectiveSync, data_parallel};
pub use launch::{DEFAULT_PEER_TIMEOUT, Launch};
pub use placement::Placement;
pub use shard::{block_shards, on_threads, shard};
pub use sync::GradSync;
pub use team::{GatherCounter, Team, ThreadTeam, gather};
pub use watchdog::Watchdog;
