//! DPO-step time, MFU and decode throughput of a random Llama model on the facade's selected
//! backend: the GPU with `--features cuda` (what `scripts/gpu/check.sh` runs), LibTorch with
//! `--features tch`, else flex.
//!
//! ```text
//! cargo run --release --features cuda --example gpu_bench -- [--shape llama3.2-1b|smollm2] \
//!     [--tokens 512] [--steps 5] [--peak-tflops 989]
//! ```
//!
//! A DPO step is 2 pairs of `--tokens` tokens: policy forward + backward on 4 rows and AdamW
//! (reference log-probs precomputed). MFU = model FLOPs (6 x parameters x tokens for full
//! training, 4 x for LoRA, whose frozen base needs no weight gradients) per second over
//! `--peak-tflops` (default: H200 dense bf16, 989).
// A measurement binary: it fails loudly on a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Instant;

use clap::Parser;
use kiln::backend::Autodiff;
use kiln::burn::tensor::backend::Backend;
use kiln::data::Example;
use kiln::losses::DpoConfig;
use kiln::model::{DecoderConfig, LlamaForCausalLM, LoraConfig, LoraTarget};
use kiln::sampling::{GenerationConfig, Generator, SamplerConfig};
use kiln::train::dpo::{DpoTrainConfig, precompute_reference_logps, train_dpo};
use kiln::train::{TrainConfig, TrainLoop};

/// The backend: the facade's selection (CUDA with `--features cuda`).
type TB = kiln::backend::Selected;

/// DPO-step time, MFU and decode tokens/s on a random Llama model.
#[derive(Debug, Parser)]
#[command(name = "gpu_bench", allow_negative_numbers = true)]
struct Args {
    /// Model shape: llama3.2-1b or smollm2.
    #[arg(long, default_value = "llama3.2-1b")]
    shape: String,
    /// Tokens per sequence of the DPO step.
    #[arg(long, default_value_t = 512)]
    tokens: usize,
    /// Timed DPO steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Peak throughput of the device in TFLOP/s, for MFU.
    #[arg(long, default_value_t = 989.0, allow_hyphen_values = true)]
    peak_tflops: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let config = match args.shape.as_str() {
        "llama3.2-1b" => DecoderConfig::llama3_2_1b(),
        "smollm2" => DecoderConfig::smollm2_135m(),
        other => return Err(format!("unknown --shape {other}").into()),
    };
    let device = Default::default();
    let params = config.num_parameters() as f64;
    let vocab = config.vocab_size as u32;
    let row = |r: u32| Example {
        ids: (0..args.tokens as u32)
            .map(|t| 10 + (r * 7919 + t * 104_729) % (vocab - 10))
            .collect(),
        loss_mask: (0..args.tokens).map(|t| t >= args.tokens / 2).collect(),
    };
    let pairs = vec![(row(0), row(1)), (row(2), row(3))];
    let pad = 0;
    let dtc = DpoTrainConfig::new()
        .with_loss(DpoConfig::new())
        .with_pad_id(Some(pad));
    println!(
        "backend {}, {} ({:.2}B parameters), DPO step on 2 pairs x {} tokens",
        std::any::type_name::<TB>(),
        args.shape,
        params / 1e9,
        args.tokens
    );
    <TB as Backend>::seed(&device, 0);
    let base = LlamaForCausalLM::<Autodiff<TB>>::init(&config, 0.02, &device);
    let reference = {
        let r = base.valid_copy();
        precompute_reference_logps(&r, &pairs, pad, 2, dtc.reduction())?
    };
    for lora in [false, true] {
        let mut policy = base.clone();
        if lora {
            let cfg = LoraConfig::new(LoraTarget::ALL.to_vec())
                .with_rank(16)
                .with_alpha(32.0);
            policy = policy.with_lora(&cfg, &device)?;
        }
        let tc = TrainConfig::new(args.steps + 1)
            .with_lr(1e-6)
            .with_micro_batch_size(2)
            .with_log_every(0);
        let mut train = TrainLoop::new(policy, tc)?;
        train_dpo(
            &mut train,
            (&pairs, &reference),
            &dtc.clone().with_until_step(Some(1)),
        )?; // warm-up (kernel compilation)
        let start = Instant::now();
        train_dpo(&mut train, (&pairs, &reference), &dtc)?;
        let secs = start.elapsed().as_secs_f64() / args.steps as f64;
        let tokens = 4.0 * args.tokens as f64;
        let flops = if lora { 4.0 } else { 6.0 } * params * tokens;
        println!(
            "DPO step {} f32: {secs:.3} s, {:.1} TFLOP/s, MFU {:.1} % of {} TFLOP/s",
            if lora { "LoRA r16" } else { "full" },
            flops / secs / 1e12,
            100.0 * flops / secs / (args.peak_tflops * 1e12),
            args.peak_tflops
        );
    }
    let model = base.valid_copy();
    let prompt = vec![
        (0..32)
            .map(|t| 10 + (t * 104_729) % (vocab - 10))
            .collect::<Vec<u32>>(),
    ];
    for (name, k, sampler) in [
        ("batch 1, greedy", 1, SamplerConfig::greedy()),
        (
            "K = 32, temperature 1",
            32,
            SamplerConfig::new().with_temperature(1.0).with_seed(0),
        ),
    ] {
        let gc = GenerationConfig::new()
            .with_sampler(sampler)
            .with_max_new_tokens(64)
            .with_num_responses(k)
            .with_pad_token_id(pad);
        let generator = Generator::new(&model, gc)?;
        generator.generate(&prompt)?; // warm-up
        let out = generator.generate(&prompt)?;
        println!(
            "decode {name}: {:.1} tokens/s ({} tokens in {:.2} s)",
            out.stats.tokens_per_second(),
            out.stats.generated_tokens,
            out.stats.wall_seconds
        );
    }
    Ok(())
}

/// The inference copy of a training model.
trait ValidCopy {
    type Inner;
    fn valid_copy(&self) -> Self::Inner;
}

impl ValidCopy for LlamaForCausalLM<Autodiff<TB>> {
    type Inner = LlamaForCausalLM<TB>;
    fn valid_copy(&self) -> LlamaForCausalLM<TB> {
        kiln::burn::module::AutodiffModule::valid(self)
    }
}
