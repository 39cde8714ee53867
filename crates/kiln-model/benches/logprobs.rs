//! Criterion bench of `sequence_logprobs` forward+backward on full logits (batch 64 x 128
//! positions x 512 vocabulary) on the default CPU backend (Flex); moved from kiln-losses' benches
//! with the log-prob code. Run: `cargo bench -p kiln-model --bench logprobs`.
// A measurement binary: it fails loudly on a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Int, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln_model::{LogProbReduction, sequence_logprobs};
use std::hint::black_box;

type B = Autodiff<Flex>;
const BATCH: usize = 64;

fn bench_logprobs(c: &mut Criterion) {
    let device = Default::default();
    let (t, v) = (128, 512);
    let logits: Tensor<B, 3> =
        Tensor::random([BATCH, t, v], Distribution::Normal(0.0, 1.0), &device);
    let ids: Tensor<B, 2, Int> =
        Tensor::random([BATCH, t], Distribution::Uniform(0.0, v as f64), &device);
    let mask: Tensor<B, 2> = Tensor::ones([BATCH, t], &device);
    c.bench_function("sequence_logprobs_64x128x512_fwd_bwd", |b| {
        b.iter(|| {
            let logits = logits.clone().require_grad();
            let lp = sequence_logprobs(logits, ids.clone(), mask.clone(), LogProbReduction::Sum);
            black_box(lp.sum().backward());
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench_logprobs
}
criterion_main!(benches);
