//! The online iterative DPO loop of "RLHF Workflow: From Reward Modeling to Online RLHF"
//! (RLHFlow, arXiv 2405.07863), assembled from Kiln's public API.
//!
//! `cargo run --release --example iterative_dpo` runs the whole loop on a built-in tiny task on
//! CPU, offline: a programmatic gold judge plays the humans, a tiny Llama-3-shaped policy is trained
//! by SFT on demonstrations of mixed quality, a Bradley-Terry proxy reward model is trained on
//! noisy gold-labelled pairs, then T online iterations of generate K -> score -> max_min pairs ->
//! DPO run, followed by an offline-DPO baseline with the same number of pairs and steps. Every
//! stage's files land under `--out` (default `runs/iterative_dpo`); rerunning resumes.
//!
//! With `--policy DIR --reward-model DIR --prompts FILE.jsonl` the same loop runs on Hugging Face
//! checkpoints (no gold judge: evaluation uses the reward model). `--help` lists every option.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "iterative_dpo/builtin.rs"]
mod builtin;
#[path = "iterative_dpo/config.rs"]
mod config;
#[path = "iterative_dpo/eval.rs"]
mod eval;
#[path = "iterative_dpo/models.rs"]
mod models;
#[path = "iterative_dpo/pipeline.rs"]
mod pipeline;
#[path = "iterative_dpo/progress.rs"]
mod progress;
#[path = "iterative_dpo/report.rs"]
mod report;
#[path = "iterative_dpo/task.rs"]
mod task;

pub use config::{LoopConfig, Reference};
pub use pipeline::run;
pub use report::Summary;

#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match config::parse_args(&args) {
        Ok(config::Command::Help) => {
            print!("{}", config::USAGE);
            return;
        }
        Ok(config::Command::Run(cfg)) => cfg,
        Err(msg) => {
            eprintln!("error: {msg}");
            std::process::exit(2);
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match run(&cfg) {
        Ok(summary) => {
            println!();
            print!("{}", report::table(&summary));
            println!();
            if let (Some(last), Some(off)) =
                (summary.iterations.last(), summary.offline_dpo.as_ref())
            {
                match (
                    last.gold_reward_mean,
                    off.gold_reward_mean,
                    summary.sft.gold_reward_mean,
                ) {
                    (Some(on), Some(offg), Some(s)) => println!(
                        "gold reward: SFT {s:.3} -> online DPO {on:.3} vs offline DPO {offg:.3} ({})",
                        if on > offg {
                            "online ahead"
                        } else {
                            "online NOT ahead"
                        }
                    ),
                    _ => println!(
                        "proxy reward: online DPO {:.3} vs offline DPO {:.3}",
                        last.proxy_reward_mean, off.proxy_reward_mean
                    ),
                }
            }
            println!(
                "total {:.1}s; outputs in {} (summary.json, reward_plot.svg, per-stage JSONL and checkpoints)",
                summary.total_seconds,
                cfg.out.display()
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
