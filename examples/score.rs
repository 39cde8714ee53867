//! Score preference pairs with a Bradley-Terry reward model and report pairwise accuracy.
//!
//! ```text
//! cargo run --release --example score -- --model-dir RM_DIR --pairs FILE.jsonl [--json]
//!     [--batch-size N] [--max-len N] [--chat-template T]
//! ```
//!
//! `RM_DIR` is a Hugging Face `LlamaForSequenceClassification` directory (`config.json`,
//! safetensors, `tokenizer.json`, its chat template). Each line of `FILE.jsonl` is a pair
//! `{"prompt": ..., "chosen": ..., "rejected": ...}`; the prompt is text or a message list
//! (multi-turn, with a system message). Every side is scored as
//! `chat_template(prompt + [assistant response])` with the checkpoint's own template, at its last
//! token (the template's end of turn), like transformers.
//! Without `--json` one line per pair and a summary are printed; with `--json` one JSON object
//! per pair (`index`, `score_chosen`, `score_rejected`, `correct`) and nothing else on stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use kiln::backend::Cpu;
use kiln::data::{ChatTemplate, PairRecord, TemplateChoice, Tokenizer, read_jsonl};
use kiln::reward::{LlamaRewardModel, RewardModel};

const USAGE: &str = "\
Score preference pairs with a reward model (CPU, burn-flex).

USAGE:
    score --model-dir RM_DIR --pairs FILE.jsonl [OPTIONS]

REQUIRED:
    --model-dir DIR     LlamaForSequenceClassification directory with tokenizer.json
    --pairs FILE        JSON Lines of {\"prompt\", \"chosen\", \"rejected\"} (prompt: text or a
                        list of {\"role\", \"content\"} messages)

OPTIONS:
    --json              one JSON object per pair: index, score_chosen, score_rejected, correct
    --batch-size N      sequences per forward pass [default: 8]
    --max-len N         tokens kept per input (left truncation) [default: 4096]
    --chat-template T   checkpoint | llama3 | FILE.jinja [default: checkpoint]
    -h, --help          print this help

Logging: set RUST_LOG (e.g. RUST_LOG=kiln_reward=debug).";

#[derive(Debug)]
struct Args {
    model_dir: PathBuf,
    pairs: PathBuf,
    json: bool,
    batch_size: usize,
    max_len: usize,
    chat_template: TemplateChoice,
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut model_dir = None;
    let mut pairs = None;
    let mut json = false;
    let mut batch_size = 8usize;
    let mut max_len = 4096usize;
    let mut chat_template = TemplateChoice::Checkpoint;
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, v: String| -> Result<usize, String> {
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{name} must be a positive integer, got {v:?}")),
            }
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--model-dir" => model_dir = Some(PathBuf::from(value("--model-dir")?)),
            "--pairs" => pairs = Some(PathBuf::from(value("--pairs")?)),
            "--json" => json = true,
            "--batch-size" => batch_size = number("--batch-size", value("--batch-size")?)?,
            "--max-len" => max_len = number("--max-len", value("--max-len")?)?,
            "--chat-template" => {
                chat_template = value("--chat-template")?
                    .parse()
                    .map_err(|e| format!("--chat-template: {e}"))?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(Args {
        model_dir: model_dir.ok_or("--model-dir is required")?,
        pairs: pairs.ok_or("--pairs is required")?,
        json,
        batch_size,
        max_len,
        chat_template,
    }))
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    let tokenizer = Tokenizer::from_model_dir(&args.model_dir)?;
    let template = ChatTemplate::load(&args.chat_template, Some(&args.model_dir), &tokenizer)?;
    let rm = LlamaRewardModel::<Cpu>::from_pretrained_with_tokenizer(
        &args.model_dir,
        tokenizer,
        template,
        &device,
    )?
    .with_batch_size(args.batch_size)
    .with_max_len(args.max_len);
    let pairs: Vec<PairRecord> = read_jsonl(&args.pairs)?;
    if pairs.is_empty() {
        return Err(format!("{}: no pairs", args.pairs.display()).into());
    }
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
    let scores = rm.score_batch(&items)?;
    let n = pairs.len();
    let mut correct = 0usize;
    for i in 0..n {
        let (c, r) = (scores[i], scores[n + i]);
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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
