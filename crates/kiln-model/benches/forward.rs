//! Forward and forward+backward throughput (tokens/s) of a ~20M-parameter Llama-3-shaped model,
//! batch 8 x 128, on the Flex CPU backend. Run: `cargo bench -p kiln-model --bench forward`.
// A measurement binary: it fails loudly on a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_model::prelude::*;
use kiln_model::{DecoderConfig, LlamaForCausalLM};

const BATCH: usize = 8;
const SEQ: usize = 128;

fn config() -> DecoderConfig {
    // The same ~20M shape in both benches (kiln-model's forward, kiln-sampling's decode).
    DecoderConfig::small_20m()
}

fn ids<B: Backend>(c: &DecoderConfig, device: &B::Device) -> Tensor<B, 2, Int> {
    Tensor::<B, 2>::random(
        [BATCH, SEQ],
        Distribution::Uniform(0.0, c.vocab_size as f64 - 1.0),
        device,
    )
    .int()
}

fn bench(cr: &mut Criterion) {
    let c = config();
    let mut group = cr.benchmark_group(format!(
        "llama_{}M_b{BATCH}x{SEQ}",
        c.num_parameters() / 1_000_000
    ));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15))
        .warm_up_time(Duration::from_secs(2))
        .throughput(Throughput::Elements((BATCH * SEQ) as u64));

    let device = Default::default();
    let model = LlamaForCausalLM::<Flex>::init(&c, 0.02, &device);
    let x = ids::<Flex>(&c, &device);
    group.bench_function("forward", |b| {
        b.iter(|| model.forward(x.clone(), None).unwrap().into_data())
    });

    let model = LlamaForCausalLM::<Autodiff<Flex>>::init(&c, 0.02, &device);
    let x = ids::<Autodiff<Flex>>(&c, &device);
    group.bench_function("forward_backward", |b| {
        b.iter(|| {
            let loss = model.forward(x.clone(), None).unwrap().mean();
            loss.backward()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
