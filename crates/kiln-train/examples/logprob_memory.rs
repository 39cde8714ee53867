//! Peak heap memory and time of sequence log-probs + backward for a Llama-3-sized vocabulary:
//! the full-logits path against `ChunkedLogProbs`, from the final hidden states (what the LM
//! head sees), with a frozen head (LoRA) and a trainable one.
//!
//! ```text
//! cargo run --release -p kiln-train --example logprob_memory -- [rows] [seq] [hidden] [vocab] [chunk] [heads] [runs]
//! ```
//! Defaults: 2 rows x 512 tokens, hidden 2048 (Llama-3.2-1B), vocab 128,256, chunk 256, both
//! heads (`heads` 1 = frozen only, 2 = trainable only), 3 runs. Every
//! position after the first is counted (the worst case for the chunked path, which projects only
//! counted positions). Peak = the counting allocator's peak during the step minus what was
//! allocated before it (the hidden states and the head weight).
// A measurement binary: it fails loudly on a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::print_stdout)]

use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use kiln_losses::DpoConfig;
use kiln_model::{ChunkedLogProbsConfig, LmHead, LogProbReduction, full_sequence_logprobs};
use peak_alloc::PeakAlloc;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

type A = Autodiff<Flex>;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric arguments"))
        .collect();
    let arg = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (rows, seq, hidden, vocab, chunk) = (
        arg(0, 2),
        arg(1, 512),
        arg(2, 2048),
        arg(3, 128_256),
        arg(4, 256),
    );
    println!(
        "rows {rows} x seq {seq}, hidden {hidden}, vocab {vocab}, chunk {chunk}; logits of one copy: {:.0} MiB",
        mib(rows * seq * vocab * 4)
    );
    let device = Default::default();
    let ids: Vec<i64> = (0..rows * seq)
        .map(|i| ((i * 7919 + 13) % vocab) as i64)
        .collect();
    let ids = Tensor::<A, 2, Int>::from_data(TensorData::new(ids, [rows, seq]), &device);
    let mut m = vec![1.0f32; rows * seq];
    for r in 0..rows {
        m[r * seq] = 0.0;
    }
    let mask = Tensor::<A, 2>::from_data(TensorData::new(m, [rows, seq]), &device);
    let dpo = DpoConfig::new()
        .with_beta(0.1)
        .init()
        .expect("valid DPO config");
    let loss = |lp: Tensor<A, 1>| {
        let half = rows / 2;
        let refs = Tensor::<A, 1>::zeros([half], &device);
        dpo.forward(
            lp.clone().narrow(0, 0, half),
            lp.narrow(0, half, half),
            refs.clone(),
            refs,
        )
        .loss
    };
    println!(
        "| head | path | peak above inputs (MiB) | of which forward / backward (MiB) | time (s) per run |"
    );
    println!("|---|---|---|---|---|");
    // Optional 6th argument: 1 = frozen head only, 2 = trainable head only.
    let heads: &[bool] = match arg(5, 0) {
        1 => &[false],
        2 => &[true],
        _ => &[false, true],
    };
    for &train_head in heads {
        for chunked in [false, true] {
            let h = Tensor::<A, 3>::random(
                [rows, seq, hidden],
                Distribution::Normal(0.0, 1.0),
                &device,
            )
            .require_grad();
            let w =
                Tensor::<A, 2>::random([hidden, vocab], Distribution::Normal(0.0, 0.02), &device);
            let w = if train_head { w.require_grad() } else { w };
            let head = LmHead::HiddenMajor(w.clone());
            let mut times = Vec::new();
            let (mut peak, mut peak_fwd, mut peak_bwd) = (0usize, 0usize, 0usize);
            for _ in 0..arg(6, 3) {
                let before = ALLOC.current_usage();
                ALLOC.reset_peak_usage();
                let t0 = Instant::now();
                let out = if chunked {
                    let c = ChunkedLogProbsConfig::new()
                        .with_chunk_size(chunk)
                        .init()
                        .expect("chunk size >= 1");
                    c.sequence_loss(
                        h.clone(),
                        &head,
                        ids.clone(),
                        mask.clone(),
                        LogProbReduction::Sum,
                        |lp| (loss(lp), ()),
                    )
                    .0
                } else {
                    loss(full_sequence_logprobs(
                        h.clone(),
                        &head,
                        ids.clone(),
                        mask.clone(),
                        LogProbReduction::Sum,
                    ))
                };
                peak_fwd = peak_fwd.max(ALLOC.peak_usage().saturating_sub(before));
                ALLOC.reset_peak_usage();
                let grads = out.backward();
                peak_bwd = peak_bwd.max(ALLOC.peak_usage().saturating_sub(before));
                // Gradients stay in the container (no host copy, which would count here).
                assert!(h.grad(&grads).is_some(), "hidden-state gradient");
                assert_eq!(w.grad(&grads).is_some(), train_head, "head gradient");
                drop(grads);
                times.push(t0.elapsed().as_secs_f64());
                peak = peak.max(peak_fwd).max(peak_bwd);
            }
            println!(
                "| {} | {} | {:.0} | {:.0} / {:.0} | {} |",
                if train_head { "trainable" } else { "frozen" },
                if chunked { "chunked" } else { "full logits" },
                mib(peak),
                mib(peak_fwd),
                mib(peak_bwd),
                times
                    .iter()
                    .map(|t| format!("{t:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
}
