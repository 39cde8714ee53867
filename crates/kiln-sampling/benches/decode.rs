//! Decode throughput (generated tokens/s) of a ~20M-parameter Llama-3-shaped model on the Flex CPU
//! backend: batch 1 and batch 32, with and without the KV cache. Greedy, a 16-token prompt, exactly
//! 32 new tokens per row (no stop ids); prefill included. Prompts are decoded in one concurrent
//! batch per core (`concurrent_batches`, as the examples do on CPU); `b32_kv_cache_one_batch` runs
//! the 32 rows as a single batch.
//!
//! Run: `cargo bench -p kiln-sampling --bench decode`. The random weights are created once and saved
//! as an HF checkpoint in `target/kiln-bench/decode-20m/`, so `scripts/bench/hf_generate.py` times
//! Hugging Face `generate` on the very same weights.
// A measurement binary: it fails loudly on a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use std::path::PathBuf;
use std::time::Duration;

use burn::backend::Flex;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_model::{DecoderConfig, LlamaForCausalLM, SaveDtype, SaveOptions};
use kiln_sampling::{GenerationConfig, Generator, SamplerConfig};

const PROMPT: usize = 16;
const NEW: usize = 32;

fn config() -> DecoderConfig {
    // The same ~20M shape in both benches (kiln-model's forward, kiln-sampling's decode).
    DecoderConfig::small_20m()
}

fn checkpoint_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/kiln-bench/decode-20m")
}

fn load_model() -> LlamaForCausalLM<Flex> {
    let device = Default::default();
    let dir = checkpoint_dir();
    if !dir.join("config.json").exists() {
        let model = LlamaForCausalLM::<Flex>::init(&config(), 0.02, &device);
        let opts = SaveOptions {
            dtype: SaveDtype::F32,
            ..SaveOptions::default()
        };
        model
            .save_pretrained(&dir, opts)
            .expect("save bench weights");
    }
    LlamaForCausalLM::from_pretrained(&dir, &device).expect("load bench weights")
}

/// Deterministic prompt ids (the HF script uses the same formula).
fn prompts(batch: usize, vocab: usize) -> Vec<Vec<u32>> {
    (0..batch)
        .map(|b| {
            (0..PROMPT)
                .map(|t| (10 + (b * 131 + t * 17) % (vocab - 10)) as u32)
                .collect()
        })
        .collect()
}

fn bench(cr: &mut Criterion) {
    let model = load_model();
    let vocab = model.config().vocab_size;
    let mut group = cr.benchmark_group(format!(
        "decode_{}M_p{PROMPT}_n{NEW}",
        model.config().num_parameters() / 1_000_000
    ));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(1));
    // Concurrent prompt batches, one per core (what the examples use on the CPU backend), and
    // one single batch of 32 rows for comparison.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cases = [
        (1usize, true, cores, "b1_kv_cache"),
        (1, false, cores, "b1_no_cache"),
        (32, true, cores, "b32_kv_cache"),
        (32, false, cores, "b32_no_cache"),
        (32, true, 1, "b32_kv_cache_one_batch"),
    ];
    for (batch, use_cache, concurrent, name) in cases {
        let ps = prompts(batch, vocab);
        group.throughput(Throughput::Elements((batch * NEW) as u64));
        let cfg = GenerationConfig::new()
            .with_sampler(SamplerConfig::greedy())
            .with_max_new_tokens(NEW)
            .with_prompt_batch_size(batch)
            .with_concurrent_batches(concurrent)
            .with_use_cache(use_cache);
        let generator = Generator::new(&model, cfg).expect("config");
        group.bench_function(name, |b| {
            b.iter(|| {
                let out = generator.generate(&ps).expect("generate");
                assert_eq!(out.stats.generated_tokens, batch * NEW);
                out
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
