//! kiln-online: the online iterative loop of "RLHF Workflow: From Reward Modeling to Online RLHF"
//! (RLHFlow, arXiv 2405.07863) as library parts, so a user's own loop is a few dozen lines.
//!
//! - [`PolicyStore`]: policies as full Hugging Face checkpoints or PEFT LoRA adapters over pi_0
//!   (`base_model_name_or_path`); loads for inference (adapters merged) or training (adapters
//!   continued, or fresh ones on a full checkpoint), saves, carries a policy over.
//! - [`Iteration`]: one online iteration as resumable stages on a
//!   [`StageRunner`](kiln_train::StageRunner): generate `K` responses per prompt -> annotate
//!   ([`kiln_reward::RewardModel`]) -> select (best-vs-worst pairs for DPO, ranked lists for
//!   RRHF) -> train, with step counts from the data, the policy carried over when every prompt
//!   tied, every random draw from the iteration's seed ([`Iteration::run`]).
//! - [`ReferenceChoice`] and [`reference_logps`]: DPO's reference (pi_0 or the previous policy),
//!   without a second model when it is the policy itself or, for LoRA, its base.
//! - [`generation_records`]: records from prompts for the annotate stage.
//! - [`EvalSetup::evaluate`]: a policy on held-out prompts: proxy reward, gold reward and win
//!   rate against a baseline with paired-bootstrap intervals (when a judge exists), length, KL
//!   to the reference.
//! - [`Observer`]: progress bars and notes for the caller to show; the library never prints.
//!
//! Everything is generic over the trainable [`Policy`] (Llama, Qwen2, or any architecture that
//! implements kiln-model's traits) and the backend; nothing picks a backend.
//!
//! # Example: T iterations of online DPO
//!
//! ```no_run
//! use burn::backend::{Autodiff, Flex};
//! use kiln_data::{ChatEncoder, Content, TruncationConfig};
//! use kiln_model::LlamaForCausalLM;
//! use kiln_online::{Iteration, IterationConfig, PolicyStore, ReferenceChoice, Silent};
//! use kiln_reward::{Annotator, AnnotatorKind};
//! use kiln_train::StageRunner;
//! use std::path::Path;
//!
//! type B = Autodiff<Flex>;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (sft, rm) = (Path::new("models/sft"), Path::new("models/rm"));
//! let device = Default::default();
//! let enc = ChatEncoder::from_model_dir(sft, &Default::default(), Default::default(), TruncationConfig::default())?;
//! let annotator: Annotator<Flex> = Annotator::load(AnnotatorKind::Bt, rm, &enc, &device)?;
//! let store = PolicyStore::<B, LlamaForCausalLM<B>>::new(sft, None, device)?;
//! let prompts: Vec<Content> = vec![Content::Text("Why is the sky blue?".into())];
//! let config = IterationConfig { epochs: 2, ..IterationConfig::default() };
//! let root = StageRunner::open("runs/mine")?;
//! let mut previous = store.base.clone();
//! for t in 1..=3u64 {
//!     let mut stages = root.child(&format!("iter_{t}"))?;
//!     let outcome = Iteration {
//!         config: &config,
//!         enc: &enc,
//!         prompts: &prompts,
//!         annotator: annotator.reward_model(),
//!         store: &store,
//!         policy_dir: &previous,
//!         reference_dir: ReferenceChoice::Sft.dir(&store.base, &previous),
//!         fixed_steps: None,
//!         seed: 42 + t,
//!         observer: &Silent,
//!     }
//!     .run(&mut stages)?;
//!     previous = outcome.policy;
//! }
//! # Ok(()) }
//! ```

// Library code returns errors; tests may unwrap.
#![cfg_attr(
    not(test),
    deny(
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod error;
pub mod evaluate;
pub mod generate;
pub mod iteration;
pub mod observer;
pub mod policy;
pub mod reference;
pub mod store;

pub use error::{Error, Result};
pub use evaluate::{EvalRecord, EvalSetup, Evaluation, GoldJudge};
pub use generate::{SamplingSettings, generation_records, sample};
pub use iteration::{
    Algorithm, DpoSettings, Iteration, IterationConfig, IterationOutcome, RrhfSettings,
};
pub use observer::{Monitor, NoBar, Observer, ProgressBar, Silent, Watch, train_watched};
pub use policy::Policy;
pub use reference::{ReferenceChoice, reference_logps};
pub use store::{PolicyStore, exact_save_options};
