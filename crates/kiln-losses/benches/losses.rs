//! Criterion benches for kiln-losses at batch 64 on the default CPU backend (Flex).
//!
//! `cargo bench -p kiln-losses`
// A measurement binary: it fails loudly on a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln_losses::{BradleyTerryConfig, DpoConfig, DpoLoss, RrhfConfig};
use std::hint::black_box;

type B = Autodiff<Flex>;
const BATCH: usize = 64;

fn logps<B: Backend>(device: &B::Device) -> Tensor<B, 1> {
    Tensor::random([BATCH], Distribution::Uniform(-200.0, -1.0), device)
}

fn bench_dpo(c: &mut Criterion) {
    let device = Default::default();
    let mut group = c.benchmark_group("dpo_batch64_fwd_bwd");
    for loss in [
        DpoLoss::Sigmoid,
        DpoLoss::Robust {
            label_smoothing: 0.1,
        },
        DpoLoss::Ipo,
        DpoLoss::Hinge,
    ] {
        let dpo = DpoConfig::new().with_loss(loss).init().unwrap();
        let (pc, pr, rc, rr) = (
            logps::<B>(&device),
            logps::<B>(&device),
            logps::<B>(&device),
            logps::<B>(&device),
        );
        group.bench_function(loss.name(), |b| {
            b.iter(|| {
                let pc = pc.clone().require_grad();
                let out = dpo.forward(pc.clone(), pr.clone(), rc.clone(), rr.clone());
                black_box(out.loss.backward());
            })
        });
    }
    group.finish();
}

fn bench_bt_rrhf(c: &mut Criterion) {
    let device = Default::default();
    let bt = BradleyTerryConfig::new()
        .with_center_rewards_coefficient(0.01)
        .init()
        .unwrap();
    let (ch, rj) = (logps::<B>(&device), logps::<B>(&device));
    c.bench_function("bradley_terry_batch64_fwd_bwd", |b| {
        b.iter(|| {
            let ch = ch.clone().require_grad();
            black_box(bt.forward(ch, rj.clone(), None).loss.backward());
        })
    });
    let rrhf = RrhfConfig::new().init().unwrap();
    let lp: Tensor<B, 2> =
        Tensor::random([BATCH / 4, 4], Distribution::Uniform(-200.0, -1.0), &device);
    let len: Tensor<B, 2> =
        Tensor::random([BATCH / 4, 4], Distribution::Uniform(1.0, 100.0), &device);
    let rw: Tensor<B, 2> = Tensor::random([BATCH / 4, 4], Distribution::Normal(0.0, 1.0), &device);
    c.bench_function("rrhf_16x4_fwd_bwd", |b| {
        b.iter(|| {
            let lp = lp.clone().require_grad();
            black_box(rrhf.forward(lp, len.clone(), rw.clone()).loss.backward());
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench_dpo, bench_bt_rrhf
}
criterion_main!(benches);
