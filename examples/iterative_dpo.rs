//! The online iterative loop of "RLHF Workflow: From Reward Modeling to Online RLHF" (RLHFlow,
//! arXiv 2405.07863), with DPO or RRHF: the command line over `kiln::online::OnlineTrainer`.
//!
//! `cargo run --release --example iterative_dpo` runs it on a built-in tiny task on CPU, offline:
//! a programmatic gold judge plays the humans; the task's SFT policy and Bradley-Terry proxy
//! reward model start the run from `assets/builtin/` (`--train-setup` trains them in the run;
//! `--annotator pairwise` trains a pairwise preference model); then the library's loop runs T
//! online iterations and an offline baseline with the same algorithm, pairs and steps. Every
//! stage's files land under `--out` (default `runs/iterative_dpo`); rerunning resumes.
//!
//! With `--policy DIR --reward-model DIR --prompts FILE.jsonl` the same loop runs on your Hugging
//! Face checkpoints (Llama or Qwen2; no gold judge: evaluation uses the reward model). `--help`
//! lists every option.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "iterative_dpo/builtin.rs"]
mod builtin;
#[path = "iterative_dpo/cli.rs"]
pub mod cli;
#[path = "iterative_dpo/config.rs"]
pub mod config;
#[path = "support/console.rs"]
mod console;
#[path = "support/logging.rs"]
mod logging;
#[path = "iterative_dpo/shipped.rs"]
pub mod shipped;
#[path = "iterative_dpo/task.rs"]
pub mod task;

use console::Console;
use kiln::burn::prelude::Backend;
use kiln::data::{ChatEncoder, PromptRecord, read_jsonl};
use kiln::online::{OnlineTrainer, RewardSource, Session, StageHook, Summary};
use kiln::reward::AnnotatorKind;
use std::sync::Arc;

pub use config::{LoopConfig, Mode, TaskConfig};

/// The training backend the facade's features select (flex by default; `--features tch`,
/// `--features cuda`).
pub type B = kiln::backend::AutodiffSelected;
/// The inference backend.
pub type I = <B as kiln::burn::tensor::backend::AutodiffBackend>::InnerBackend;
/// The example's error type: every library error converts into it.
pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Text to ids: the policy's own tokenizer and chat template, or the built-in task's.
fn encoder(cfg: &LoopConfig) -> Res<ChatEncoder> {
    let o = &cfg.online;
    Ok(match &cfg.task.policy {
        Some(dir) => {
            ChatEncoder::from_model_dir(dir, &o.chat_template, o.template_clock(), o.truncation)?
        }
        None => ChatEncoder::builtin_tiny(o.truncation)?,
    })
}

/// The trainer of `cfg` with its inputs' paths (the setup fills them later), the built-in
/// task's judge in its modes.
fn trainer(cfg: &LoopConfig, out: &std::path::Path) -> OnlineTrainer<B> {
    let t = &cfg.task;
    let policy = match (&t.policy, cfg.mode()) {
        (Some(p), _) => p.clone(),
        (None, _) => out.join("sft"),
    };
    let reward = match (cfg.mode(), &t.reward_model) {
        (Mode::Real, Some(rm)) if t.annotator == AnnotatorKind::Bt => RewardSource::bt(rm),
        _ => {
            let dir = builtin::annotator_dir(cfg, out);
            match t.annotator {
                AnnotatorKind::Bt => RewardSource::bt(dir),
                AnnotatorKind::Pairwise => RewardSource::pairwise(dir),
            }
        }
    };
    let trainer = OnlineTrainer::new(policy, reward, Vec::new(), cfg.online.clone())
        .with_observer(Arc::new(Console))
        .with_extra_settings(cfg.task_settings());
    match cfg.mode() {
        Mode::Real => trainer,
        _ => trainer.with_judge(task::GoldJudge::default()),
    }
}

/// Runs (or resumes) the whole loop; `hook` is called at every stage boundary (an error it
/// returns stops the run there, as a kill would).
pub fn run(cfg: &LoopConfig, hook: Option<StageHook>) -> Res<Summary> {
    let devices = vec![Default::default(); cfg.task.devices];
    let mut session = Session::<B>::open(&cfg.task.out, devices)?.with_hook(hook);
    let enc = encoder(cfg)?;
    let trainer = trainer(cfg, session.dir()).with_encoder(enc.clone());
    session.pin_settings(&trainer.settings(), &Console)?;
    B::seed(&Default::default(), cfg.online.seed);
    let trainer = match cfg.mode() {
        Mode::Real => {
            let file = cfg
                .task
                .prompts
                .clone()
                .ok_or("real-model mode needs --prompts")?;
            let prompts: Vec<_> = read_jsonl::<PromptRecord>(&file)?
                .into_iter()
                .map(|p| p.prompt)
                .collect();
            if prompts.len() <= cfg.online.eval_prompts {
                return Err(format!(
                    "{}: {} prompts, but --eval-prompts {} are held out for evaluation; provide more",
                    file.display(),
                    prompts.len(),
                    cfg.online.eval_prompts
                )
                .into());
            }
            trainer.with_prompts(prompts)
        }
        _ => {
            let setup = builtin::run_setup(&mut session, cfg, &enc)?;
            trainer
                .with_prompts(setup.pool)
                .with_eval_prompts(setup.eval_prompts)
        }
    };
    let summary = trainer.run_in(&mut session)?;
    session.finish()?;
    Ok(summary)
}

/// `--setup-only`: trains the built-in task's SFT policy and proxy reward model into `--out`
/// (resumable stages, as in a run) and writes `manifest.json` beside them.
pub fn setup_only(cfg: &LoopConfig) -> Res<shipped::Manifest> {
    if cfg.mode() != Mode::Builtin || cfg.task.annotator != AnnotatorKind::Bt {
        return Err(
            "--setup-only makes the built-in task's SFT policy and Bradley-Terry reward \
                    model: drop --policy, --reward-model and --annotator"
                .into(),
        );
    }
    let mut cfg = cfg.clone();
    cfg.task.train_setup = true;
    let devices = vec![Default::default(); cfg.task.devices];
    let mut session = Session::<B>::open(&cfg.task.out, devices)?;
    kiln::data::atomic::write_json(session.path("config.json"), &cfg.to_json())?;
    B::seed(&Default::default(), cfg.online.seed);
    builtin::run_setup(&mut session, &cfg, &encoder(&cfg)?)?;
    let manifest = shipped::manifest_of(&cfg.task.out, &cfg)?;
    kiln::data::atomic::write_json(session.path("manifest.json"), &manifest)?;
    session.finish()?;
    Ok(manifest)
}

#[allow(dead_code)]
fn main() {
    kiln::malloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (cfg, setup_only_flag) = match cli::parse_command(&refs) {
        Ok(parsed) => parsed,
        Err(e) => e.exit(),
    };
    logging::init();
    if setup_only_flag {
        match setup_only(&cfg) {
            Ok(manifest) => println!(
                "the SFT policy and the reward model are in {} ({} files, digests in manifest.json)",
                cfg.task.out.display(),
                manifest.files.len()
            ),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    match run(&cfg, None) {
        Ok(summary) => {
            let rank = std::env::var("RANK")
                .ok()
                .and_then(|r| r.parse::<usize>().ok());
            if summary.processes > 1 && rank.is_some_and(|r| r != 0) {
                return;
            }
            println!();
            print!("{summary}");
            println!();
            println!("{}", summary.verdict());
            println!(
                "total {:.1}s on {} peer(s) in {} process(es); outputs in {} (summary.json, \
                 reward_plot.svg, per-stage JSONL and checkpoints)",
                summary.total_seconds,
                summary.peers.max(1),
                summary.processes.max(1),
                cfg.task.out.display()
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
