//! Score preference pairs (pairwise accuracy) or annotate generations with a Bradley-Terry reward
//! model.
//!
//! ```text
//! cargo run --release --example score -- --model-dir RM_DIR (--pairs FILE.jsonl | --generations FILE.jsonl)
//!     [--adapter DIR] [--json] [--batch-size N] [--max-len N] [--chat-template T] [--devices N]
//! ```
//!
//! `RM_DIR` is a Hugging Face sequence-classification directory with one label (`config.json`,
//! safetensors, `tokenizer.json`, its chat template), or PEFT adapters over their base (the
//! tokenizer and template are then read from the base unless the adapter directory has its own).
//! The architecture is `config.json`'s `model_type` (the base's for adapters): `llama`
//! (`LlamaForSequenceClassification`) or `qwen2` (`Qwen2ForSequenceClassification`); another type
//! is an error naming the file and the type. With `--pairs`, each line is
//! `{"prompt": ..., "chosen": ..., "rejected": ...}`; with `--generations`, each line is
//! `{"prompt": ..., "responses": [...]}` and the annotated records (`"rewards"` added) are printed
//! as JSON Lines. Prompts are text or a message list (multi-turn, with a system message). Every
//! response is scored as `chat_template(prompt + [assistant response])` with the checkpoint's own
//! template, at its last non-pad token, like transformers. A NaN or infinite score stops with an
//! error naming the record. `--devices N` scores on N peers (threads sharing the model, each on
//! whole batches: the same scores as one peer). Try it on the tiny fixtures:
//!
//! ```text
//! cargo run --release --example score -- --model-dir tests/fixtures/reward/tiny-rm \
//!     --pairs tests/fixtures/reward/tiny-rm/pairs.jsonl
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "support/logging.rs"]
mod logging;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use kiln::data::{
    ChatTemplate, GenerationRecord, PairRecord, TemplateChoice, Tokenizer, read_jsonl,
};
use kiln::model::traits::{has_adapter_files, resolve_model_dir};
use kiln::model::{
    Adapters, HfModel, LlamaForSequenceClassification, MissingScore, ModelType,
    Qwen2ForSequenceClassification, SequenceScorer,
};
use kiln::reward::annotate::{PROMPTS_PER_CALL, annotate_with_progress, short};
use kiln::reward::{ClassifierRewardModel, RewardModel};
use kiln::train::parallel::{block_shards, on_threads};

/// The backend the facade's features select: flex by default, LibTorch with `--features tch`,
/// CUDA with `--features cuda`.
type B = kiln::backend::Selected;
/// The selected backend's device.
type Device = <B as kiln::burn::tensor::backend::BackendTypes>::Device;

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
    /// Sequence-classification directory (Llama or Qwen2, one label) with tokenizer.json and a
    /// chat template, or PEFT adapters over their base.
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

pub(crate) fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    run_to(
        args,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
}

/// An error a scoring thread can hand back (and [`score_with`]'s).
type PeerError = Box<dyn std::error::Error + Send + Sync>;

/// [`run`] writing what it prints to `out` (the records, the pairs, the accuracy) and `err` (the
/// accuracy with `--json`).
pub(crate) fn run_to(
    args: Args,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let scored = match ModelType::of_dir(&args.model_dir)? {
        ModelType::Llama => score_with(&args, out, err, |dir, device, missing| {
            LlamaForSequenceClassification::<B>::from_pretrained(dir, device, missing)
        }),
        ModelType::Qwen2 => score_with(&args, out, err, |dir, device, missing| {
            Qwen2ForSequenceClassification::<B>::from_pretrained(dir, device, missing)
        }),
    };
    scored.map_err(|e| e as Box<dyn std::error::Error>)
}

/// Loads the reward model as `S` (the architecture `config.json` names; `from_pretrained` reads a
/// plain checkpoint directory) and scores.
fn score_with<S>(
    args: &Args,
    out: &mut dyn Write,
    err: &mut dyn Write,
    from_pretrained: impl FnOnce(&Path, &Device, MissingScore) -> kiln::model::Result<S>,
) -> Result<(), PeerError>
where
    S: SequenceScorer<B> + HfModel<B> + Adapters<B> + Sync,
{
    let device = Default::default();
    let (base, _) = resolve_model_dir(&args.model_dir)?;
    let files = if args.model_dir.join("tokenizer.json").exists() {
        args.model_dir.clone()
    } else {
        base
    };
    let tokenizer = Tokenizer::from_model_dir(&files)?;
    let template = ChatTemplate::load(&args.chat_template, Some(&files), &tokenizer)?;
    let model = match &args.adapter {
        // A PEFT adapter directory (or a LoRA checkpoint) brings its own score head.
        None => S::load_hf(&args.model_dir, &device)?.merge_adapters(),
        Some(adapter) => {
            // --adapter (SEQ_CLS) brings the score head a causal-LM base lacks.
            let base = if has_adapter_files(&args.model_dir) {
                S::load_hf(&args.model_dir, &device)?.merge_adapters()
            } else {
                from_pretrained(&args.model_dir, &device, MissingScore::Init { std: 0.0 })?
            };
            base.load_adapter(adapter, &device)?.merge_adapters()
        }
    };
    let rm = ClassifierRewardModel::from_parts(model, tokenizer, template)?
        .with_batch_size(args.batch_size as usize)
        .with_max_len(args.max_len as usize);
    let devices = args.devices as usize;
    if let Some(file) = &args.generations {
        let records: Vec<GenerationRecord> = read_jsonl(file)?;
        let shards = block_shards(records.len(), PROMPTS_PER_CALL, devices);
        let annotate = |range: Range<usize>| -> Result<_, PeerError> {
            let offset = range.start;
            annotate_with_progress(&rm, &records[range], |_, _| {}).map_err(|e| {
                let e = match e {
                    kiln::reward::Error::NonFiniteReward {
                        index,
                        prompt,
                        response,
                        value,
                    } => kiln::reward::Error::NonFiniteReward {
                        index: index + offset,
                        prompt,
                        response,
                        value,
                    },
                    e => e,
                };
                format!("{}: {e}", file.display()).into()
            })
        };
        let annotated = on_threads("annotating", &shards, annotate)?;
        for r in annotated {
            writeln!(out, "{}", serde_json::to_string(&r)?)?;
        }
        return Ok(());
    }
    let file =
        (args.pairs.as_ref()).ok_or("give --pairs FILE.jsonl or --generations FILE.jsonl")?;
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
    // Each peer scores whole batches, so the scores are the same bits for any --devices.
    let batch = args.batch_size as usize;
    let shards = block_shards(items.len(), batch, devices);
    let scores = on_threads("scoring", &shards, |range| -> Result<_, PeerError> {
        Ok(rm.score_batch(&items[range])?)
    })?;
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
            writeln!(out, "{obj}")?;
        } else {
            writeln!(
                out,
                "pair {i:>5}: chosen {c:>10.4}  rejected {r:>10.4}  margin {:>9.4}  {}",
                c - r,
                if ok { "ok" } else { "WRONG" }
            )?;
        }
    }
    let accuracy = correct as f64 / n as f64;
    let summary = format!("pairwise accuracy {accuracy:.4} ({correct}/{n})");
    if args.json {
        writeln!(err, "{summary}")?;
    } else {
        writeln!(out, "{summary}")?;
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
