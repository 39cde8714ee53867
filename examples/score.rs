//! Score preference pairs (pairwise accuracy) or annotate generations with a Bradley-Terry reward
//! model.
//!
//! ```text
//! cargo run --release --example score -- --model-dir RM_DIR (--pairs FILE.jsonl | --generations FILE.jsonl)
//!     [--adapter DIR] [--json] [--batch-size N] [--max-len N] [--chat-template T] [--devices N]
//! ```
//!
//! `RM_DIR` is a Hugging Face `LlamaForSequenceClassification` directory (`config.json`,
//! safetensors, `tokenizer.json`, its chat template). With `--pairs`, each line is
//! `{"prompt": ..., "chosen": ..., "rejected": ...}`; with `--generations`, each line is
//! `{"prompt": ..., "responses": [...]}` and the annotated records (`"rewards"` added) are printed
//! as JSON Lines. Prompts are text or a message list (multi-turn, with a system message). Every
//! response is scored as `chat_template(prompt + [assistant response])` with the checkpoint's own
//! template, at its last non-pad token, like transformers. A NaN or infinite score stops with an
//! error naming the record. `--devices N` scores on N peers (threads sharing the model, each on
//! whole batches: the same scores as one peer).
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "support/logging.rs"]
mod logging;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kiln::data::{
    ChatTemplate, GenerationRecord, PairRecord, TemplateChoice, Tokenizer, read_jsonl,
};
use kiln::model::{LlamaForSequenceClassification, MissingScore};
use kiln::reward::LlamaRewardModel;
use kiln::reward::annotate::short;
use kiln::reward::parallel::{annotate_parallel, score_parallel};

/// The backend the facade's features select: flex by default, LibTorch with `--features tch`,
/// CUDA with `--features cuda`.
type B = kiln::backend::Selected;

/// Score preference pairs or annotate generations with a reward model
/// (flex on the CPU; LibTorch with `--features tch`, CUDA with `--features cuda`).
#[derive(Debug, Parser)]
// Negative numbers are values, not flags (`--temperature -1` reaches the validation that names
// the option instead of "unexpected argument"); float options also take `allow_hyphen_values`,
// since clap does not read `-1e-5` as a number.
#[command(name = "score", version, allow_negative_numbers = true)]
#[command(
    after_help = "Logging: RUST_LOG (e.g. RUST_LOG=kiln_reward=debug); warnings are \
shown by default."
)]
pub(crate) struct Args {
    /// LlamaForSequenceClassification directory with tokenizer.json and a chat template.
    #[arg(long, value_name = "DIR")]
    model_dir: PathBuf,
    /// JSON Lines of {"prompt", "chosen", "rejected"}.
    #[arg(
        long,
        value_name = "FILE.jsonl",
        required_unless_present = "generations"
    )]
    pairs: Option<PathBuf>,
    /// JSON Lines of {"prompt", "responses"}: prints the annotated records.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with = "pairs")]
    generations: Option<PathBuf>,
    /// A PEFT LoRA adapter (SEQ_CLS, with its score head) to apply on top of the model.
    #[arg(long, value_name = "DIR")]
    adapter: Option<PathBuf>,
    /// One JSON object per pair (index, score_chosen, score_rejected, correct).
    #[arg(long)]
    json: bool,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// Tokens kept per input (left truncation).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(2..))]
    max_len: u64,
    /// checkpoint | llama3 | FILE.jinja.
    #[arg(long, value_name = "T", default_value = "checkpoint")]
    chat_template: TemplateChoice,
    /// Peers scoring in parallel (threads sharing the model; on a CPU they share the cores), each
    /// on whole batches, so the scores do not depend on it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    devices: u64,
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    let tokenizer = Tokenizer::from_model_dir(&args.model_dir)?;
    let template = ChatTemplate::load(&args.chat_template, Some(&args.model_dir), &tokenizer)?;
    let missing = match args.adapter {
        Some(_) => MissingScore::Init { std: 0.0 },
        None => MissingScore::Error,
    };
    let mut model =
        LlamaForSequenceClassification::<B>::from_pretrained(&args.model_dir, &device, missing)?;
    if let Some(adapter) = &args.adapter {
        model = model.load_adapter(adapter, &device)?.merge_adapters();
    }
    let rm = LlamaRewardModel::from_parts(model, tokenizer, template)?
        .with_batch_size(args.batch_size as usize)
        .with_max_len(args.max_len as usize);
    if let Some(file) = &args.generations {
        let records: Vec<GenerationRecord> = read_jsonl(file)?;
        let annotated = annotate_parallel(&rm, &records, args.devices as usize, |_, _| {})
            .map_err(|e| format!("{}: {e}", file.display()))?;
        for r in annotated {
            println!("{}", serde_json::to_string(&r)?);
        }
        return Ok(());
    }
    let file = args
        .pairs
        .as_ref()
        .expect("clap requires --pairs or --generations");
    let pairs: Vec<PairRecord> = read_jsonl(file)?;
    // Score every chosen and rejected side in one stream of batches.
    let texts: Vec<(String, String)> = pairs
        .iter()
        .map(|p| (p.chosen.text(), p.rejected.text()))
        .collect();
    let mut items = Vec::with_capacity(2 * pairs.len());
    for (p, (c, _)) in pairs.iter().zip(&texts) {
        items.push((&p.prompt, c.as_str()));
    }
    for (p, (_, r)) in pairs.iter().zip(&texts) {
        items.push((&p.prompt, r.as_str()));
    }
    let scores = score_parallel(&rm, &items, args.devices as usize, args.batch_size as usize)?;
    let n = pairs.len();
    let mut correct = 0usize;
    for i in 0..n {
        let (c, r) = (scores[i], scores[n + i]);
        if let Some((side, v)) = [("chosen", c), ("rejected", r)]
            .into_iter()
            .find(|(_, v)| !v.is_finite())
        {
            return Err(format!(
                "{}:{}: non-finite score {v} for the {side} response (prompt {:?}); the reward \
                 model is broken",
                file.display(),
                i + 1,
                short(&pairs[i].prompt.text(), 60)
            )
            .into());
        }
        let ok = c > r;
        correct += usize::from(ok);
        if args.json {
            let obj = serde_json::json!({
                "index": i,
                "score_chosen": c,
                "score_rejected": r,
                "correct": ok,
            });
            println!("{obj}");
        } else {
            println!(
                "pair {i:>5}: chosen {c:>10.4}  rejected {r:>10.4}  margin {:>9.4}  {}",
                c - r,
                if ok { "ok" } else { "WRONG" }
            );
        }
    }
    let accuracy = correct as f64 / n as f64;
    if args.json {
        eprintln!("pairwise accuracy {accuracy:.4} ({correct}/{n})");
    } else {
        println!("pairwise accuracy {accuracy:.4} ({correct}/{n})");
    }
    Ok(())
}

fn main() -> ExitCode {
    kiln::malloc::keep_freed_memory();
    let args = Args::parse();
    logging::init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
