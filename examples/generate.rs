//! Generate text with a Hugging Face Llama-3 checkpoint on the CPU.
//!
//! ```text
//! cargo run --release --example generate -- --model-dir DIR (--prompt TEXT | --messages FILE.json)
//!     [--system TEXT] [--raw] [--chat-template T] [--template-date YYYY-MM-DD]
//!     [--max-new-tokens N] [--temperature T] [--top-p P] [--top-k K] [--n N] [--seed S] [--json]
//! ```
//!
//! `DIR` holds `config.json`, `model.safetensors` (or shards), `tokenizer.json` and the chat
//! template (`chat_template.jinja` or `tokenizer_config.json`). Without `--raw` the conversation
//! (an optional system message, then the prompt as a user message, or the `--messages` file) is
//! rendered through the checkpoint's own chat template with the generation prompt, exactly like
//! transformers' `apply_chat_template`; with `--raw` the text is encoded as is. Generation stops
//! at `generation_config.json`'s `eos_token_id` and the template's end-of-turn token. Try it on
//! the tiny fixture:
//!
//! ```text
//! cargo run --release --example generate -- --model-dir tests/fixtures/sampling/tiny-chat \
//!     --prompt "What colour is the sky?" --n 2 --max-new-tokens 32
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use kiln::backend::Cpu;
use kiln::data::hf_files::read_eos_token_ids;
use kiln::data::{ChatTemplate, DateTime, Message, TemplateChoice, TemplateClock, Tokenizer};
use kiln::model::LlamaForCausalLM;
use kiln::sampling::{GenerationConfig, Generator, Progress, SamplerConfig};

const USAGE: &str = "\
Generate text with a Hugging Face Llama-3 checkpoint (CPU, burn-flex).

USAGE:
    generate --model-dir DIR (--prompt TEXT | --messages FILE.json) [OPTIONS]

REQUIRED:
    --model-dir DIR        directory with config.json, model.safetensors (or shards), tokenizer.json
                           and a chat template (chat_template.jinja or tokenizer_config.json)
    --prompt TEXT          the prompt (a user message unless --raw), or
    --messages FILE.json   a conversation: a JSON list of {\"role\", \"content\"} (system, user,
                           assistant; multi-turn), answered as the next assistant turn

OPTIONS:
    --system TEXT          a system message before the prompt
    --raw                  encode the prompt as is (no chat template, no special tokens added)
    --chat-template T      checkpoint | llama3 | FILE.jinja [default: checkpoint]
    --template-date D      the date (YYYY-MM-DD) the template's strftime_now() returns [today]
    --max-new-tokens N     maximum generated tokens per response [default: 128]
    --temperature T        softmax temperature; 0 means greedy [default: 1.0]
    --top-p P              nucleus sampling threshold in (0, 1] [default: 1.0]
    --top-k K              keep only the K most likely tokens [default: off]
    --n N                  number of responses [default: 1]
    --seed S               RNG seed [default: 0]
    --json                 print one JSON object per response (token_ids, text, finish_reason, ...)
    -h, --help             print this help

Logging: set RUST_LOG (e.g. RUST_LOG=kiln_sampling=debug).";

#[derive(Debug)]
struct Args {
    model_dir: PathBuf,
    prompt: Option<String>,
    messages: Option<PathBuf>,
    system: Option<String>,
    raw: bool,
    chat_template: TemplateChoice,
    clock: TemplateClock,
    max_new_tokens: usize,
    temperature: f64,
    top_p: f64,
    top_k: Option<usize>,
    n: usize,
    seed: u64,
    json: bool,
}

/// Parses the command line; `Ok(None)` means `--help` was asked for.
fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut model_dir = None;
    let mut args = Args {
        model_dir: PathBuf::new(),
        prompt: None,
        messages: None,
        system: None,
        raw: false,
        chat_template: TemplateChoice::Checkpoint,
        clock: TemplateClock::System,
        max_new_tokens: 128,
        temperature: 1.0,
        top_p: 1.0,
        top_k: None,
        n: 1,
        seed: 0,
        json: false,
    };
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (flag.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value ({what})"))
        };
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{name}: cannot parse {v:?} as a number"))
        }
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--model-dir" => model_dir = Some(PathBuf::from(value("a directory")?)),
            "--prompt" => args.prompt = Some(value("the prompt text")?),
            "--messages" => args.messages = Some(PathBuf::from(value("a JSON file")?)),
            "--system" => args.system = Some(value("the system message")?),
            "--chat-template" => {
                args.chat_template = value("checkpoint, llama3 or a file")?
                    .parse()
                    .map_err(|e| format!("{name}: {e}"))?
            }
            "--template-date" => {
                let v = value("a date YYYY-MM-DD")?;
                args.clock = TemplateClock::Pinned(
                    DateTime::parse_date(&v)
                        .ok_or_else(|| format!("{name}: {v:?} is not a date (YYYY-MM-DD)"))?,
                );
            }
            "--raw" => args.raw = true,
            "--json" => args.json = true,
            "--max-new-tokens" => args.max_new_tokens = num(&name, value("an integer")?)?,
            "--temperature" => args.temperature = num(&name, value("a number >= 0")?)?,
            "--top-p" => args.top_p = num(&name, value("a number in (0, 1]")?)?,
            "--top-k" => args.top_k = Some(num(&name, value("an integer")?)?),
            "--n" => args.n = num(&name, value("an integer >= 1")?)?,
            "--seed" => args.seed = num(&name, value("an integer")?)?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    args.model_dir = model_dir.ok_or("--model-dir DIR is required")?;
    match (&args.prompt, &args.messages) {
        (None, None) => return Err("--prompt TEXT or --messages FILE.json is required".into()),
        (Some(_), Some(_)) => return Err("give --prompt or --messages, not both".into()),
        (None, Some(_)) if args.raw => return Err("--raw takes --prompt, not --messages".into()),
        _ => {}
    }
    if args.raw && args.system.is_some() {
        return Err("--system needs the chat template (drop --raw)".into());
    }
    if !args.model_dir.is_dir() {
        return Err(format!(
            "--model-dir {}: not a directory",
            args.model_dir.display()
        ));
    }
    Ok(Some(args))
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    let t0 = Instant::now();
    let model = LlamaForCausalLM::<Cpu>::from_pretrained(&args.model_dir, &device)?;
    let tokenizer = Tokenizer::from_model_dir(&args.model_dir)?;
    let load_secs = t0.elapsed().as_secs_f64();

    let mut pad_id = None;
    let (mut stop_ids, prompt_ids) = match (&args.prompt, args.raw) {
        (Some(prompt), true) => {
            let mut stop_ids = read_eos_token_ids(&args.model_dir)?;
            stop_ids.extend(&model.config().eos_token_id);
            for name in ["<|eot_id|>", "<|end_of_text|>"] {
                stop_ids.extend(tokenizer.token_id(name).ok());
            }
            (stop_ids, tokenizer.encode(prompt)?)
        }
        _ => {
            let template =
                ChatTemplate::load(&args.chat_template, Some(&args.model_dir), &tokenizer)?
                    .with_clock(args.clock);
            let messages = conversation(&args)?;
            let ids = template.encode(&tokenizer, &messages, true)?.ids;
            pad_id = template.pad_id(&tokenizer).ok();
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
    let config = GenerationConfig::new()
        .with_sampler(sampler)
        .with_max_new_tokens(args.max_new_tokens)
        .with_num_responses(args.n)
        .with_stop_token_ids(stop_ids)
        .with_pad_token_id(
            pad_id
                .or(model.config().pad_token_id)
                .or_else(|| tokenizer.pad_id().ok())
                .unwrap_or(0),
        )
        // The CPU backend: one concurrent prompt batch per core.
        .with_concurrent_batches(std::thread::available_parallelism().map_or(1, |n| n.get()));
    let generator = Generator::new(&model, config)?.with_tokenizer(&tokenizer);

    let show_bar = !args.json && std::io::stderr().is_terminal();
    let max_tokens = args.n * args.max_new_tokens;
    let bar = |p: &Progress| {
        if show_bar {
            let width = 30;
            let done = (p.generated_tokens * width / max_tokens.max(1)).min(width);
            eprint!(
                "\r[{}{}] {}/{} responses, {} tokens",
                "#".repeat(done),
                " ".repeat(width - done),
                p.finished_responses,
                p.total_responses,
                p.generated_tokens
            );
        }
    };
    let out = generator.generate_with(std::slice::from_ref(&prompt_ids), &[0], bar)?;
    if show_bar {
        eprintln!();
    }

    let responses = &out.responses[0];
    if args.json {
        for g in responses {
            let obj = serde_json::json!({
                "index": g.sample_index,
                "token_ids": g.token_ids,
                "text": g.text,
                "finish_reason": g.finish_reason,
                "logprobs": g.logprobs,
            });
            println!("{obj}");
        }
        return Ok(());
    }
    let s = &out.stats;
    println!(
        "model {} ({} parameters, loaded in {load_secs:.2}s); prompt: {} tokens",
        args.model_dir.display(),
        model.config().num_parameters(),
        prompt_ids.len()
    );
    for g in responses {
        println!();
        println!(
            "--- response {} ({} tokens, {}, log-prob {:.2}) ---",
            g.sample_index,
            g.token_ids.len(),
            g.finish_reason,
            g.total_logprob()
        );
        println!("{}", g.text);
    }
    println!();
    println!(
        "{} tokens in {:.2}s: {:.1} tokens/s (prefill {:.3}s, decode {:.2}s over {} steps)",
        s.generated_tokens,
        s.wall_seconds,
        s.tokens_per_second(),
        s.prefill_seconds,
        s.decode_seconds,
        s.steps
    );
    Ok(())
}

/// The conversation to answer: `--messages`, or `--system` + `--prompt`.
fn conversation(args: &Args) -> Result<Vec<Message>, Box<dyn std::error::Error>> {
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(Message::system(system.as_str()));
    }
    if let Some(path) = &args.messages {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--messages {}: {e}", path.display()))?;
        let list: Vec<Message> = serde_json::from_str(&text).map_err(|e| {
            format!(
                "--messages {}: expected a JSON list of {{\"role\", \"content\"}} objects: {e}",
                path.display()
            )
        })?;
        if list.is_empty() {
            return Err(format!("--messages {}: the conversation is empty", path.display()).into());
        }
        messages.extend(list);
    }
    if let Some(prompt) = &args.prompt {
        messages.push(Message::user(prompt.as_str()));
    }
    Ok(messages)
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
