//! Generate text with a Hugging Face Llama-3 checkpoint on the CPU.
//!
//! ```text
//! cargo run --release --example generate -- --model-dir DIR --prompt TEXT [--raw]
//!     [--max-new-tokens N] [--temperature T] [--top-p P] [--top-k K] [--n N] [--seed S] [--json]
//! ```
//!
//! `DIR` holds `config.json`, `model.safetensors` (or shards) and `tokenizer.json`. Without `--raw`
//! the prompt is one user message rendered through the Llama-3 chat template with the generation
//! prompt; with `--raw` the text is encoded as is. Generation stops at `<|eot_id|>`,
//! `<|end_of_text|>` and the config's `eos_token_id`. Try it on the tiny fixture:
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
use kiln::data::{ChatTemplate, Message, Tokenizer};
use kiln::model::LlamaForCausalLM;
use kiln::sampling::{GenerationConfig, Generator, Progress, SamplerConfig};

const USAGE: &str = "\
Generate text with a Hugging Face Llama-3 checkpoint (CPU, burn-flex).

USAGE:
    generate --model-dir DIR --prompt TEXT [OPTIONS]

REQUIRED:
    --model-dir DIR        directory with config.json, model.safetensors (or shards), tokenizer.json
    --prompt TEXT          the prompt (a user message unless --raw)

OPTIONS:
    --raw                  encode the prompt as is (no chat template, no special tokens added)
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
    prompt: String,
    raw: bool,
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
    let mut prompt = None;
    let mut args = Args {
        model_dir: PathBuf::new(),
        prompt: String::new(),
        raw: false,
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
            "--prompt" => prompt = Some(value("the prompt text")?),
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
    args.prompt = prompt.ok_or("--prompt TEXT is required")?;
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

    let mut stop_ids = model.config().eos_token_id.clone();
    let prompt_ids = if args.raw {
        for name in ["<|eot_id|>", "<|end_of_text|>"] {
            stop_ids.extend(tokenizer.token_id(name).ok());
        }
        tokenizer.encode(&args.prompt)?
    } else {
        let template = ChatTemplate::llama3(&tokenizer)?;
        stop_ids.extend(template.stop_ids());
        template
            .encode(&tokenizer, &[Message::user(args.prompt.as_str())], true)?
            .ids
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
        .with_pad_token_id(tokenizer.pad_id().unwrap_or(0))
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
