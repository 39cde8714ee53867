//! Time and peak heap memory of one DPO step (policy forward + backward + AdamW) on
//! SmolLM2-135M's shape with random weights: full f32 fine-tuning, LoRA on an f32 base, LoRA on
//! a bf16 base, each with the full-logits or the chunked log-prob path.
//!
//! ```text
//! cargo run --release -p kiln-train --example dpo_step -- <full|lora|lora-bf16> <full|chunked> [steps] [pairs] [len] [prompt]
//! ```
//! Defaults: 4 steps (the first is a warm-up that creates AdamW's state and is not reported),
//! 2 pairs x 128 tokens with a 64-token prompt (64 counted response tokens per sequence), LoRA
//! rank 16 / alpha 32 on all seven projections. Memory columns: what is allocated before a step
//! (weights, AdamW state, reference log-probs, batch data) and the peak during it; both from the
//! counting global allocator (heap only: code, stacks and the allocator's own slack are not
//! included). `KILN_CHECKPOINTING=balanced` trains on `Autodiff<Flex, BalancedCheckpointing>`
//! (activation checkpointing: memory-bound ops are recomputed in the backward pass instead of
//! kept); the last column says which.
// A measurement binary: it fails loudly on a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::print_stdout)]

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module};
use burn::tensor::FloatDType;
use burn::tensor::backend::AutodiffBackend;
use kiln_losses::DpoConfig;
use kiln_model::LogProbStrategy;
use kiln_model::{DecoderConfig, LlamaForCausalLM, LoraConfig, LoraTarget};
use kiln_train::dpo::{DpoTrainConfig, precompute_reference_logps, train_dpo};
use kiln_train::{TrainConfig, TrainLoop};
use peak_alloc::PeakAlloc;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

type A = Autodiff<Flex>;
/// Activation checkpointing: burn recomputes memory-bound ops (element-wise, reshapes) in the
/// backward pass; matmul outputs stay stored.
type Checkpointed = Autodiff<Flex, BalancedCheckpointing>;

fn main() {
    match std::env::var("KILN_CHECKPOINTING").as_deref() {
        Ok("balanced") => run::<Checkpointed>("balanced"),
        Ok(other) if !other.is_empty() && other != "none" => {
            panic!("KILN_CHECKPOINTING must be none or balanced, got {other}")
        }
        _ => run::<A>("none"),
    }
}

fn run<A: AutodiffBackend>(checkpointing: &str) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map_or("full", String::as_str).to_string();
    let logprobs = match args.get(1).map_or("chunked", String::as_str) {
        "full" => LogProbStrategy::Full,
        "chunked" => LogProbStrategy::default(),
        other => panic!("log-prob path must be full or chunked, got {other}"),
    };
    let num = |i: usize, d: usize| args.get(i).map_or(d, |s| s.parse().expect("a number"));
    let (steps, n_pairs, len, prompt) = (num(2, 4), num(3, 2), num(4, 128), num(5, 64));
    let cfg = DecoderConfig::smollm2_135m();
    let device = Default::default();

    let before_model = ALLOC.current_usage();
    let base = LlamaForCausalLM::<A>::init(&cfg, 0.02, &device);
    let lora = LoraConfig::new(LoraTarget::ALL.to_vec())
        .with_rank(16)
        .with_alpha(32.0);
    let policy = match mode.as_str() {
        "full" => base,
        "lora" => base.with_lora(&lora, &device).expect("valid LoRA config"),
        "lora-bf16" => base
            .into_dtype(FloatDType::BF16)
            .expect("flex supports bf16")
            .with_lora(&lora, &device)
            .expect("valid LoRA config"),
        other => panic!("mode must be full, lora or lora-bf16, got {other}"),
    };
    let weights = ALLOC.current_usage() - before_model;
    let trainable = if policy.has_adapters() {
        policy.num_adapter_params()
    } else {
        policy.num_params()
    };

    let pairs = common::random_pairs(steps * n_pairs, len, prompt, cfg.vocab_size);
    let pad = 2;
    let dtc = DpoTrainConfig::new()
        .with_loss(DpoConfig::new().with_beta(0.1))
        .with_pad_id(Some(pad))
        .with_logprobs(logprobs);
    let reference = {
        let r = policy.without_adapters().valid();
        precompute_reference_logps(&r, &pairs, pad, n_pairs, dtc.reduction())
            .expect("reference log-probs")
    };
    let config = TrainConfig::new(steps)
        .with_lr(1e-5)
        .with_micro_batch_size(n_pairs)
        .with_log_every(0);
    if std::env::var_os("KILN_PHASES").is_some() {
        phases(policy, &config, &pairs, &reference, &dtc, steps, n_pairs);
        return;
    }
    let mut train = TrainLoop::new(policy, config).expect("valid train config");
    let (mut times, mut peaks, mut resident) = (Vec::new(), Vec::new(), Vec::new());
    for step in 0..steps {
        let before = ALLOC.current_usage();
        ALLOC.reset_peak_usage();
        let t0 = Instant::now();
        let until = dtc.clone().with_until_step(Some(step + 1));
        let stats = train_dpo(&mut train, (&pairs, &reference), &until).expect("DPO step");
        let dt = t0.elapsed().as_secs_f64();
        assert_eq!(stats.len(), 1);
        if step > 0 {
            times.push(dt);
            peaks.push(ALLOC.peak_usage());
            resident.push(before);
        }
    }
    let peak = peaks.iter().copied().max().unwrap_or(0);
    let res = resident.iter().copied().max().unwrap_or(0);
    println!(
        "| {mode} | {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {} | {checkpointing} |",
        match logprobs {
            LogProbStrategy::Full => "full logits",
            LogProbStrategy::Chunked(_) => "chunked",
        },
        trainable,
        common::mib(weights),
        common::mib(res),
        common::mib(peak),
        common::mib(peak - res),
        common::spread(&times),
    );
}

/// `KILN_PHASES=1`: the same step as `TrainLoop::train_step`, spelled out (loss, backward,
/// gradient collection, AdamW), printing the heap after each phase and its peak.
fn phases<A: AutodiffBackend>(
    mut model: LlamaForCausalLM<A>,
    config: &TrainConfig,
    pairs: &[(kiln_data::Example, kiln_data::Example)],
    reference: &kiln_train::dpo::ReferenceLogps,
    dtc: &DpoTrainConfig,
    steps: usize,
    n_pairs: usize,
) {
    use burn::optim::{GradientsParams, Optimizer};
    let device = Default::default();
    let dpo = dtc.loss.init().expect("valid DPO config");
    let mut optim = config.adamw::<A, LlamaForCausalLM<A>>();
    for step in 0..steps {
        let idx: Vec<usize> = (step * n_pairs..(step + 1) * n_pairs).collect();
        let pad = dtc.pad().expect("pad id set");
        let batch = kiln_train::dpo::collate_dpo::<A>(pairs, reference, &idx, pad, &device)
            .expect("collate");
        let base = ALLOC.current_usage();
        let mut line = format!("step {step}: resident {:.0} MiB", common::mib(base));
        let mark = |name: &str, line: &mut String| {
            line.push_str(&format!(
                " | {name}: now +{:.0}, peak +{:.0}",
                common::mib(ALLOC.current_usage().saturating_sub(base)),
                common::mib(ALLOC.peak_usage().saturating_sub(base))
            ));
            ALLOC.reset_peak_usage();
        };
        ALLOC.reset_peak_usage();
        let out = kiln_train::dpo::dpo_loss(&model, &batch, &dpo, dtc).expect("loss");
        mark("loss", &mut line);
        let grads = out.loss.backward();
        mark("backward", &mut line);
        let grads = GradientsParams::from_grads(grads, &model);
        mark("collect", &mut line);
        model = optim.step(1e-5, model, grads);
        mark("adamw", &mut line);
        drop(out);
        println!("{line}");
    }
}
