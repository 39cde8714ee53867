//! kiln-online: the online iterative loop of "RLHF Workflow: From Reward Modeling to Online RLHF"
//! (RLHFlow, arXiv 2405.07863) as a library: [`OnlineTrainer`] runs it whole; its parts are here
//! for a loop of your own.
//!
//! | module | what |
//! |---|---|
//! | [`trainer`] | [`OnlineTrainer`]: pi_0 + a [`RewardSource`] + prompts + an [`OnlineConfig`] -> `run(out)` -> [`Summary`] |
//! | [`config`] | [`OnlineConfig`] (one burn `Config` embedding the trainer, optimiser and generation configs), [`Algorithm`], [`ReferenceChoice`], [`PromptOrder`] |
//! | [`session`] | [`Session`]: a run's directory and placement (torchrun launch joined, `config.json` pinned, left on drop) |
//! | [`iteration`] | [`Iteration`]: one iteration as resumable stages: generate -> annotate -> select -> train |
//! | [`stage`] | [`StageRunner`]: stages skipped when done, outputs renamed into place atomically |
//! | [`generate`], [`annotate`], [`reference`](mod@reference) | the sharded work of a stage: sampling, scoring, DPO's reference log-probs |
//! | [`evaluate`] | [`Evaluator`]: gold and proxy reward, win rate against SFT with bootstrap intervals, length, KL to SFT |
//! | [`summary`] | [`Summary`] (`summary.json`), its table, verdict and plot |
//! | [`store`], [`policy`] | [`PolicyStore`]: checkpoints or PEFT adapters over pi_0; [`Policy`]: what the loop trains |
//! | [`reward`], [`judge`] | [`RewardSource`]: where rewards come from; [`Judge`]: a programmatic gold reward |
//! | [`reward_fit`] | [`fit_reward_model`]: a Bradley-Terry reward model trained on preference pairs, with its held-out accuracy |
//! | [`prompts`] | reading prompt files; each iteration's prompts |
//! | [`observer`] | [`Observer`]: progress for the caller to show (the library never prints); [`fit`] |
//!
//! Everything is generic over the backend and the trainable [`Policy`] (Llama, Qwen2, or any
//! architecture implementing kiln-model's traits); [`OnlineTrainer`] picks Llama or Qwen2 from the
//! policy's `config.json`.
//!
//! # Example
//!
//! ```no_run
//! use kiln_online::{OnlineConfig, OnlineTrainer, RewardSource, read_prompts};
//! type B = burn::backend::Autodiff<burn::backend::Flex>;
//! # fn main() -> Result<(), kiln_online::Error> {
//! let prompts = read_prompts("prompts.jsonl")?;
//! let summary = OnlineTrainer::<B>::new("sft", RewardSource::bt("rm"), prompts, OnlineConfig::new())
//!     .run("runs/mine")?; // rerun with the same directory to resume
//! println!("{summary}\n{}", summary.verdict());
//! # Ok(()) }
//! ```

pub mod annotate;
pub mod config;
pub mod error;
pub mod evaluate;
pub mod generate;
pub mod iteration;
pub mod judge;
pub mod observer;
pub mod policy;
pub mod prompts;
pub mod reference;
pub mod reward;
pub mod reward_fit;
pub mod session;
pub mod stage;
pub mod store;
pub mod summary;
pub mod trainer;

pub use config::{Algorithm, OnlineConfig, PromptOrder, ReferenceChoice};
pub use error::{Error, Result};
pub use evaluate::{EvalRecord, Evaluation, Evaluator, Interval};
pub use generate::{generation_records, sample};
pub use iteration::{Iteration, IterationOutcome};
pub use judge::Judge;
pub use observer::{FitProgress, Logged, NoBar, Observer, ProgressBar, Silent, fit};
pub use policy::Policy;
pub use prompts::read_prompts;
pub use reference::reference_logps;
pub use reward::RewardSource;
pub use reward_fit::{HeldOut, fit_reward_model};
pub use session::Session;
pub use stage::{StageEvent, StageHook, StageOutputs, StageRunner, StageStatus};
pub use store::{PolicyStore, exact_save_options};
pub use summary::Summary;
pub use trainer::OnlineTrainer;
