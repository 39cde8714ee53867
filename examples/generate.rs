//! Generate text with a Hugging Face Llama or Qwen2 checkpoint on the CPU.
//!
//! ```text
//! cargo run --release --example generate -- --model-dir DIR (--prompt TEXT | --messages FILE.json)
//!     [--system TEXT] [--adapter DIR] [--raw] [--chat-template T] [--template-date YYYY-MM-DD]
//!     [--max-new-tokens N] [--temperature T] [--top-p P] [--top-k K] [--n N] [--seed S] [--json]
//! ```
//!
//! `DIR` holds `config.json`, `model.safetensors` (or shards), `tokenizer.json` and the chat
//! template (`chat_template.jinja` or `tokenizer_config.json`), or PEFT adapters over their base
//! (`adapter_config.json`'s `base_model_name_or_path`; the tokenizer and template are then read
//! from the base unless the adapter directory has its own). The architecture is `config.json`'s
//! `model_type` (the base's for adapters): `llama` (Llama 2/3, SmolLM2, ...) or `qwen2` (Qwen2,
//! Qwen2.5); another type is an error naming the file and the type. Without `--raw` the
//! conversation (an optional system message, then the prompt as a user message, or the
//! `--messages` file) is rendered through the checkpoint's own chat template with the generation
//! prompt, exactly like transformers' `apply_chat_template`; with `--raw` the text is encoded as
//! is. Generation stops at `generation_config.json`'s `eos_token_id` and the template's
//! end-of-turn token. `--adapter` applies a PEFT LoRA adapter (merged into the weights). Try it on
//! the tiny fixtures (a Llama-3 one and a Qwen2 one with a ChatML template):
//!
//! ```text
//! cargo run --release --example generate -- --model-dir tests/fixtures/sampling/tiny-chat \
//!     --prompt "What colour is the sky?" --n 2 --max-new-tokens 32
//! cargo run --release --example generate -- --model-dir tests/fixtures/qwen2/chat \
//!     --prompt "What colour is the sky?" --max-new-tokens 32
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "support/logging.rs"]
mod logging;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use kiln::data::hf_files::read_eos_token_ids;
use kiln::data::message::read_messages;
use kiln::data::{ChatTemplate, DateTime, Message, TemplateChoice, TemplateClock, Tokenizer};
use kiln::model::traits::resolve_model_dir;
use kiln::model::{
    Adapters, CausalLm, DecoderConfig, HfModel, LlamaForCausalLM, ModelType, Qwen2ForCausalLM,
};
use kiln::sampling::{GenerationConfig, Generator, Progress, SamplerConfig};

/// The backend the facade's features select: flex by default, LibTorch with `--features tch`,
/// CUDA with `--features cuda`.
type B = kiln::backend::Selected;

/// Generate text with a Hugging Face Llama or Qwen2 checkpoint
/// (flex on the CPU; LibTorch with `--features tch`, CUDA with `--features cuda`).
#[derive(Debug, Parser)]
// Negative numbers are values, not flags (`--temperature -1` reaches the validation that names
// the option instead of "unexpected argument"); float options also take `allow_hyphen_values`,
// since clap does not read `-1e-5` as a number.
#[command(name = "generate", version, allow_negative_numbers = true)]
#[command(
    after_help = "Logging: RUST_LOG (e.g. RUST_LOG=kiln_sampling=debug); warnings are \
shown by default."
)]
pub(crate) struct Args {
    /// Directory with config.json, model.safetensors (or shards), tokenizer.json and a chat
    /// template (chat_template.jinja or tokenizer_config.json), or PEFT adapters over their base;
    /// Llama or Qwen2, as config.json's model_type says.
    #[arg(long, value_name = "DIR")]
    model_dir: PathBuf,
    /// The prompt (a user message unless --raw).
    #[arg(long, value_name = "TEXT", required_unless_present = "messages")]
    prompt: Option<String>,
    /// A conversation: a JSON list of {"role", "content"} (system, user, assistant; multi-turn),
    /// answered as the next assistant turn (a --prompt is appended as a last user turn).
    #[arg(long, value_name = "FILE.json", conflicts_with = "raw")]
    messages: Option<PathBuf>,
    /// A system message before the conversation.
    #[arg(long, value_name = "TEXT", conflicts_with = "raw")]
    system: Option<String>,
    /// A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors) to apply.
    #[arg(long, value_name = "DIR")]
    adapter: Option<PathBuf>,
    /// Encode the prompt as is (no chat template, no special tokens added).
    #[arg(long)]
    raw: bool,
    /// checkpoint | llama3 | FILE.jinja.
    #[arg(long, value_name = "T", default_value = "checkpoint")]
    chat_template: TemplateChoice,
    /// The date (YYYY-MM-DD) the template's strftime_now() returns [default: today].
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    template_date: Option<DateTime>,
    /// Maximum generated tokens per response.
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Softmax temperature; 0 means greedy.
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    temperature: f64,
    /// Nucleus sampling threshold in (0, 1].
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    top_p: f64,
    /// Keep only the K most likely tokens [default: off].
    #[arg(long)]
    top_k: Option<usize>,
    /// Number of responses.
    #[arg(long, default_value_t = 1)]
    n: usize,
    /// RNG seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object per response (token_ids, text, finish_reason, logprobs).
    #[arg(long)]
    json: bool,
}

fn parse_date(s: &str) -> Result<DateTime, String> {
    DateTime::parse_date(s).ok_or_else(|| format!("`{s}` is not a date (YYYY-MM-DD)"))
}

pub(crate) fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    run_to(args, &mut std::io::stdout().lock())
}

/// [`run`] writing what it prints to `out`.
pub(crate) fn run_to(args: Args, out: &mut dyn Write) -> Result<(), Box<dyn std::error::Error>> {
    if !args.model_dir.is_dir() {
        return Err(format!("--model-dir {}: not a directory", args.model_dir.display()).into());
    }
    match ModelType::of_dir(&args.model_dir)? {
        ModelType::Llama => generate_with::<LlamaForCausalLM<B>>(&args, out),
        ModelType::Qwen2 => generate_with::<Qwen2ForCausalLM<B>>(&args, out),
    }
}

/// Where the tokenizer, the chat template and `generation_config.json` are read: `model_dir`,
/// or the base checkpoint's directory for PEFT adapters without a `tokenizer.json` of their own.
fn tokenizer_dir(model_dir: &Path, base: &Path) -> PathBuf {
    if model_dir.join("tokenizer.json").exists() {
        model_dir.to_path_buf()
    } else {
        base.to_path_buf()
    }
}

/// Loads the checkpoint as `M` (the architecture `config.json` names) and generates.
fn generate_with<M>(args: &Args, out: &mut dyn Write) -> Result<(), Box<dyn std::error::Error>>
where
    M: CausalLm<B> + HfModel<B> + Adapters<B> + Sync,
{
    let device = Default::default();
    let t0 = Instant::now();
    let (base, _) = resolve_model_dir(&args.model_dir)?;
    let config = DecoderConfig::from_file(base.join("config.json"))?;
    // Adapters in --model-dir (a LoRA checkpoint) and --adapter are merged into the weights.
    let mut model = M::load_hf(&args.model_dir, &device)?.merge_adapters();
    if let Some(adapter) = &args.adapter {
        model = model.load_adapter(adapter, &device)?.merge_adapters();
    }
    let files = tokenizer_dir(&args.model_dir, &base);
    let tokenizer = Tokenizer::from_model_dir(&files)?;
    let load_secs = t0.elapsed().as_secs_f64();

    let mut pad_id = None;
    let (mut stop_ids, prompt_ids) = match (&args.prompt, args.raw) {
        (Some(prompt), true) => {
            let mut stop_ids = read_eos_token_ids(&files, &tokenizer)?;
            stop_ids.extend(&config.eos_token_id);
            for name in ["<|eot_id|>", "<|end_of_text|>"] {
                stop_ids.extend(tokenizer.token_id(name).ok());
            }
            (stop_ids, tokenizer.encode(prompt)?)
        }
        _ => {
            let clock = args
                .template_date
                .map_or(TemplateClock::System, TemplateClock::Pinned);
            let template = ChatTemplate::load(&args.chat_template, Some(&files), &tokenizer)?
                .with_clock(clock);
            let messages = conversation(args)?;
            let ids = template.encode(&tokenizer, &messages, true)?.ids;
            pad_id = template
                .resolve_pad_id(&tokenizer, config.pad_token_id)
                .ok();
            (template.stop_ids(), ids)
        }
    };
    stop_ids.sort_unstable();
    stop_ids.dedup();

    let sampler = SamplerConfig::new()
        .with_temperature(args.temperature)
        .with_top_p(args.top_p)
        .with_top_k(args.top_k)
        .with_seed(args.seed);
    let gen_config = GenerationConfig::new()
        .with_sampler(sampler)
        .with_max_new_tokens(args.max_new_tokens)
        .with_num_responses(args.n)
        .with_stop_token_ids(stop_ids)
        .with_pad_token_id(
            // Raw prompts have no template: the tokenizer's pad, else the config's.
            pad_id
                .or_else(|| tokenizer.pad_id().ok())
                .or(config.pad_token_id)
                .unwrap_or(0),
        )
        .with_concurrent_batches(kiln::backend::decode_concurrency());
    let generator = Generator::new(&model, gen_config)?.with_tokenizer(&tokenizer);

    let bar = indicatif::ProgressBar::new((args.n * args.max_new_tokens) as u64);
    if args.json || !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("[{bar:30}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("#>-"),
    );
    let show = |p: &Progress| {
        bar.set_position(p.generated_tokens as u64);
        bar.set_message(format!(
            "{}/{} responses, {} tokens",
            p.finished_responses, p.total_responses, p.generated_tokens
        ));
    };
    let result = generator.generate_with_progress(std::slice::from_ref(&prompt_ids), &[0], show)?;
    bar.finish_and_clear();

    let responses = &result.responses[0];
    if args.json {
        for g in responses {
            let obj = serde_json::json!({
                "index": g.sample_index,
                "token_ids": g.token_ids,
                "text": g.text,
                "finish_reason": g.finish_reason,
                "logprobs": g.logprobs,
            });
            writeln!(out, "{obj}")?;
        }
        return Ok(());
    }
    let s = &result.stats;
    writeln!(
        out,
        "model {} ({} parameters, loaded in {load_secs:.2}s); prompt: {} tokens",
        args.model_dir.display(),
        config.num_parameters(),
        prompt_ids.len()
    )?;
    for g in responses {
        writeln!(out)?;
        writeln!(
            out,
            "--- response {} ({} tokens, {}, log-prob {:.2}) ---",
            g.sample_index,
            g.token_ids.len(),
            g.finish_reason,
            g.total_logprob()
        )?;
        writeln!(out, "{}", g.text)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{} tokens in {:.2}s: {:.1} tokens/s (prefill {:.3}s, decode {:.2}s over {} steps)",
        s.generated_tokens,
        s.wall_seconds,
        s.tokens_per_second(),
        s.prefill_seconds,
        s.decode_seconds,
        s.steps
    )?;
    Ok(())
}

/// The conversation to answer: `--system`, then `--messages`, then `--prompt` as a user turn.
fn conversation(args: &Args) -> Result<Vec<Message>, Box<dyn std::error::Error>> {
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(Message::system(system.as_str()));
    }
    if let Some(path) = &args.messages {
        let list = read_messages(path).map_err(|e| format!("--messages: {e}"))?;
        messages.extend(list);
    }
    if let Some(prompt) = &args.prompt {
        messages.push(Message::user(prompt.as_str()));
    }
    Ok(messages)
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
