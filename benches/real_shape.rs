//! Real-shape speed: SmolLM2-135M's config (hidden 576, 30 layers, GQA 9/3, vocab 49,152) with
//! random weights, on the default CPU backend (flex with AVX-512 matmuls). The same workloads run
//! in PyTorch / transformers with `scripts/bench/torch_real_shape.py`, and
//! `scripts/bench/compare.sh` prints both side by side with ratios.
//!
//! | benchmark | workload |
//! |---|---|
//! | `dpo_step_f32` | one DPO step (sigmoid, beta 0.1) on 2 pairs x 128 tokens: policy forward + backward (4 rows) and AdamW over every weight; reference log-probs precomputed |
//! | `dpo_step_lora` | the same with LoRA r = 16 on all seven projections (frozen base, AdamW on the adapters) |
//! | `rm_step_f32` | one Bradley-Terry step of a reward model (score head) on 2 pairs x 128 tokens, AdamW over every weight |
//! | `decode_b1` | greedy decoding of 64 new tokens after a 32-token prompt, batch 1, KV cache |
//! | `decode_k32` | 32 samples (temperature 1) of 64 new tokens from one 32-token prompt (prefilled once) |
//! | `matmul_f32_2048` | a 2048^3 f32 matmul (the machine's f32 GEMM peak) |
//! | `matmul_bf16_2048` | the same in bf16 |
//!
//! Run: `cargo bench --bench real_shape` (about 6 minutes). The random weights are written once to
//! `target/kiln-bench/smollm2-random/` so the PyTorch script times the very same model.
//!
//! With `--features tch` (libtorch 2.9.0, see the README) the same workloads also run, from the
//! same generic code, on the LibTorch backend, as groups `smollm2_135m_tch` and `machine_tch`
//! (`cargo bench --features tch --bench real_shape -- _tch/` runs only those);
//! `scripts/bench/compare.sh --tch` adds them as a column.
// A measurement binary: it fails loudly on a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use kiln::backend::Cpu;
use kiln::burn::tensor::backend::{AutodiffBackend, Backend};
use kiln::burn::tensor::{DType, Distribution, Tensor, TensorData};
use kiln::data::Example;
use kiln::losses::DpoConfig;
use kiln::model::{
    DecoderConfig, LlamaForCausalLM, LlamaForSequenceClassification, LoraConfig, LoraTarget,
    SaveDtype, SaveOptions,
};
use kiln::sampling::{GenerationConfig, Generator, SamplerConfig};
use kiln::train::dpo::{DpoTrainConfig, precompute_reference_logps, train_dpo};
use kiln::train::reward::{RewardPair, RewardTrainConfig, train_reward_model};
use kiln::train::{TrainConfig, TrainLoop};

const SEQ: usize = 128;
const PROMPT: usize = 64;
const PAIRS: usize = 2;
const DECODE_PROMPT: usize = 32;
const NEW: usize = 64;

fn weights_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/kiln-bench/smollm2-random")
}

/// SmolLM2-135M's shapes with `N(0, 0.02)` weights, saved once (f32) and reloaded.
fn weights() -> PathBuf {
    let dir = weights_dir();
    if !dir.join("model.safetensors").exists() {
        let device = Default::default();
        <Cpu as kiln::burn::prelude::Backend>::seed(&device, 0);
        let model = LlamaForCausalLM::<Cpu>::init(&DecoderConfig::smollm2_135m(), 0.02, &device);
        let opts = SaveOptions {
            dtype: SaveDtype::F32,
            ..SaveOptions::default()
        };
        model
            .save_pretrained(&dir, opts)
            .expect("save bench weights");
    }
    dir
}

/// Deterministic token ids (the PyTorch script uses the same formula).
fn ids(row: usize, len: usize, vocab: usize) -> Vec<u32> {
    (0..len)
        .map(|t| (10 + (row * 7919 + t * 104_729) % (vocab - 10)) as u32)
        .collect()
}

/// Row `row` as a prompt + completion example: the last `SEQ - PROMPT` tokens are the completion.
fn example(row: usize, vocab: usize) -> Example {
    Example {
        ids: ids(row, SEQ, vocab),
        loss_mask: (0..SEQ).map(|t| t >= PROMPT).collect(),
    }
}

fn pairs(vocab: usize) -> Vec<(Example, Example)> {
    (0..PAIRS)
        .map(|p| (example(2 * p, vocab), example(2 * p + 1, vocab)))
        .collect()
}

/// Times `iters` calls of `step` (criterion's `iter_custom`).
fn timed(iters: u64, mut step: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        step();
    }
    start.elapsed()
}

/// The training workloads on backend `B`, as criterion group `group`.
fn training_on<B: AutodiffBackend>(cr: &mut Criterion, group: &str) {
    kiln::malloc::keep_freed_memory(); // as the examples do; KILN_MALLOC=system to compare
    let dir = weights();
    let device = B::Device::default();
    let mut group = cr.benchmark_group(group);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .warm_up_time(Duration::from_secs(1));
    let vocab = DecoderConfig::smollm2_135m().vocab_size;
    let data = pairs(vocab);
    let pad = 2;
    let dtc = DpoTrainConfig::new()
        .with_loss(DpoConfig::new().with_beta(0.1))
        .with_pad_id(Some(pad));
    let reference = {
        let r = LlamaForCausalLM::<B::InnerBackend>::from_pretrained(&dir, &device).unwrap();
        precompute_reference_logps(&r, &data, pad, 8, dtc.reduction()).unwrap()
    };
    let tc = || {
        TrainConfig::new(1_000_000)
            .with_lr(1e-6)
            .with_micro_batch_size(PAIRS)
            .with_log_every(0)
    };
    for lora in [false, true] {
        let mut policy = LlamaForCausalLM::<B>::from_pretrained(&dir, &device).unwrap();
        if lora {
            let cfg = LoraConfig::new(LoraTarget::ALL.to_vec())
                .with_rank(16)
                .with_alpha(32.0);
            policy = policy.with_lora(&cfg, &device).unwrap();
        }
        let mut train = TrainLoop::new(policy, tc()).unwrap();
        let name = if lora {
            "dpo_step_lora"
        } else {
            "dpo_step_f32"
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                timed(iters, || {
                    let dtc = dtc.clone().with_until_step(Some(train.step() + 1));
                    train_dpo(&mut train, (&data, &reference), &dtc).unwrap();
                })
            })
        });
    }
    let rm = LlamaForSequenceClassification::<B>::from_pretrained(
        &dir,
        &device,
        kiln::model::MissingScore::Init { std: 0.02 },
    )
    .unwrap();
    let rm_pairs: Vec<RewardPair> = data
        .iter()
        .map(|(c, r)| RewardPair {
            chosen: c.clone(),
            rejected: r.clone(),
            margin: None,
        })
        .collect();
    let rtc = RewardTrainConfig::new().with_pad_id(Some(pad));
    let mut train = TrainLoop::new(rm, tc()).unwrap();
    group.bench_function("rm_step_f32", |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                let rtc = rtc.clone().with_until_step(Some(train.step() + 1));
                train_reward_model(&mut train, &rm_pairs, &rtc).unwrap();
            })
        })
    });
    group.finish();
}

/// The decoding workloads on backend `B` (no autodiff), as criterion group `group`.
fn decoding_on<B: Backend>(cr: &mut Criterion, group: &str) {
    kiln::malloc::keep_freed_memory(); // as the examples do; KILN_MALLOC=system to compare
    let dir = weights();
    let device = B::Device::default();
    let model = LlamaForCausalLM::<B>::from_pretrained(&dir, &device).unwrap();
    let vocab = model.config().vocab_size;
    let prompt = vec![ids(1000, DECODE_PROMPT, vocab)];
    let mut group = cr.benchmark_group(group);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(1));
    for (name, k, sampler) in [
        ("decode_b1", 1, SamplerConfig::greedy()),
        (
            "decode_k32",
            32,
            SamplerConfig::new().with_temperature(1.0).with_seed(0),
        ),
    ] {
        let config = GenerationConfig::new()
            .with_sampler(sampler)
            .with_max_new_tokens(NEW)
            .with_num_responses(k)
            .with_pad_token_id(2);
        let generator = Generator::new(&model, config).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let out = generator.generate(&prompt).unwrap();
                assert_eq!(out.stats.generated_tokens, k * NEW);
                out
            })
        });
    }
    group.finish();
}

/// The machine's f32 (and, with `bf16`, bf16) GEMM peak on backend `B`, as criterion group `group`.
fn matmul_on<B: Backend>(cr: &mut Criterion, group: &str, bf16: bool) {
    kiln::malloc::keep_freed_memory(); // as the examples do; KILN_MALLOC=system to compare
    let device = B::Device::default();
    let mut group = cr.benchmark_group(group);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(1));
    let n = 2048;
    let a = Tensor::<B, 2>::random([n, n], Distribution::Normal(0.0, 1.0), &device);
    let b = Tensor::<B, 2>::random([n, n], Distribution::Normal(0.0, 1.0), &device);
    group.bench_function("matmul_f32_2048", |bench| {
        bench.iter(|| a.clone().matmul(b.clone()).into_data())
    });
    if !bf16 {
        group.finish();
        return;
    }
    let half = |t: &Tensor<B, 2>| {
        let v: Vec<half::bf16> = t
            .to_data()
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(half::bf16::from_f32)
            .collect();
        Tensor::<B, 2>::from_data(TensorData::new(v, [n, n]), (&device, DType::BF16))
    };
    let (a16, b16) = (half(&a), half(&b));
    group.bench_function("matmul_bf16_2048", |bench| {
        bench.iter(|| a16.clone().matmul(b16.clone()).into_data())
    });
    group.finish();
}

fn matmul(cr: &mut Criterion) {
    matmul_on::<Cpu>(cr, "machine", true);
}

fn decoding(cr: &mut Criterion) {
    decoding_on::<Cpu>(cr, "smollm2_135m");
}

fn training(cr: &mut Criterion) {
    training_on::<kiln::backend::AutodiffCpu>(cr, "smollm2_135m");
}

/// LibTorch: bf16 is left out, as in the PyTorch script, on CPUs without AVX-512, where
/// libtorch's bf16 GEMM takes a fallback path (about a minute per 2048^3 product here).
#[cfg(feature = "tch")]
fn libtorch(cr: &mut Criterion) {
    use kiln::backend::{AutodiffLibTorch, LibTorch};
    #[cfg(target_arch = "x86_64")]
    let bf16 = std::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let bf16 = false;
    matmul_on::<LibTorch>(cr, "machine_tch", bf16);
    decoding_on::<LibTorch>(cr, "smollm2_135m_tch");
    training_on::<AutodiffLibTorch>(cr, "smollm2_135m_tch");
}

#[cfg(not(feature = "tch"))]
criterion_group!(benches, matmul, decoding, training);
#[cfg(feature = "tch")]
criterion_group!(benches, matmul, decoding, training, libtorch);
criterion_main!(benches);
