//! The online iterative loop of "RLHF Workflow: From Reward Modeling to Online RLHF" (RLHFlow,
//! arXiv 2405.07863), with DPO or RRHF, assembled from Kiln's public API.
//!
//! `cargo run --release --example iterative_dpo` runs the whole loop on a built-in tiny task on
//! CPU, offline: a programmatic gold judge plays the humans; a tiny Llama-3-shaped SFT policy
//! (trained on demonstrations of mixed quality) and a Bradley-Terry proxy reward model (trained on
//! noisy gold-labelled pairs) start the run, loaded from `assets/builtin/` (`--train-setup` trains
//! them in the run; `--annotator pairwise` trains a pairwise preference model); then T online
//! iterations of generate K -> annotate -> select -> train run (DPO against the previous
//! iteration's policy by default), followed by an offline baseline with the same algorithm, pairs
//! and steps. Every stage's files land under `--out` (default `runs/iterative_dpo`); rerunning
//! resumes.
//!
//! With `--policy DIR --reward-model DIR --prompts FILE.jsonl` the same loop runs on Hugging Face
//! checkpoints (no gold judge: evaluation uses the reward model). `--help` lists every option.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "iterative_dpo/builtin.rs"]
mod builtin;
#[path = "iterative_dpo/cli.rs"]
pub mod cli;
#[path = "iterative_dpo/config.rs"]
mod config;
#[path = "support/logging.rs"]
mod logging;
#[path = "iterative_dpo/models.rs"]
mod models;
#[path = "iterative_dpo/pipeline.rs"]
mod pipeline;
#[path = "iterative_dpo/progress.rs"]
mod progress;
#[path = "iterative_dpo/report.rs"]
mod report;
#[path = "iterative_dpo/shipped.rs"]
pub mod shipped;
#[path = "iterative_dpo/stages.rs"]
mod stages;
#[path = "iterative_dpo/task.rs"]
mod task;

pub use config::{Algorithm, AnnotatorKind, LoopConfig, ReferenceChoice};
pub use pipeline::{run, run_with, setup_only};
pub use report::{Evaluation, Summary, table, verdict};

#[allow(dead_code)]
fn main() {
    kiln::malloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (cfg, setup_only) = match cli::parse_command(&refs) {
        Ok(parsed) => parsed,
        Err(e) => e.exit(),
    };
    logging::init();
    if setup_only {
        match pipeline::setup_only(&cfg) {
            Ok(manifest) => println!(
                "the SFT policy and the reward model are in {} ({} files, digests in manifest.json)",
                cfg.out.display(),
                manifest.files.len()
            ),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    match run(&cfg) {
        Ok(summary) => {
            let rank = std::env::var("RANK")
                .ok()
                .and_then(|r| r.parse::<usize>().ok());
            if summary.processes > 1 && rank.is_some_and(|r| r != 0) {
                return;
            }
            println!();
            print!("{}", report::table(&summary));
            println!();
            println!("{}", report::verdict(&summary));
            println!(
                "total {:.1}s on {} peer(s) in {} process(es) (training, generation, annotation \
                 and reference log-probs on every peer; evaluation on rank 0); outputs in {} \
                 (summary.json, reward_plot.svg, per-stage JSONL and checkpoints)",
                summary.total_seconds,
                summary.peers.max(1),
                summary.processes.max(1),
                cfg.out.display()
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
