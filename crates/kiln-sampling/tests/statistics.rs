//! Sampling statistics: with a fixed logits vector, empirical frequencies over many seeded draws
//! match the filtered distribution (total-variation bound), which is itself checked against an
//! independent, sort-based reference of the Hugging Face logits warpers. Plus determinism.
#![cfg(test)]

use burn::backend::Flex;
use burn::tensor::Tensor;
use kiln_sampling::{Sampler, SamplerConfig, row_rng};

const LOGITS: [f32; 12] = [
    2.0, -1.0, 0.5, 3.1, 1.2, -0.3, 2.7, 0.0, -2.5, 1.9, 0.8, 3.0,
];

/// HF-style reference: temperature, then top-k (ties at the k-th value kept), then top-p (sort
/// ascending, drop tokens whose cumulative probability is <= 1 - top_p, keep the top one), then
/// min-p, each renormalising through a softmax over what is left.
fn reference(c: &SamplerConfig, logits: &[f32]) -> Vec<f64> {
    let mut s: Vec<f64> = logits.iter().map(|&x| x as f64 / c.temperature).collect();
    let softmax = |s: &[f64]| {
        let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|&x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|x| x / z).collect::<Vec<f64>>()
    };
    if let Some(k) = c.top_k {
        let mut sorted = s.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let kth = sorted[k - 1];
        s.iter_mut()
            .filter(|x| **x < kth)
            .for_each(|x| *x = f64::NEG_INFINITY);
    }
    if c.top_p < 1.0 {
        let p = softmax(&s);
        let mut order: Vec<usize> = (0..s.len()).collect();
        order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
        let mut cum = 0.0;
        for (j, &i) in order.iter().enumerate() {
            cum += p[i];
            if cum <= 1.0 - c.top_p && j + 1 < order.len() {
                s[i] = f64::NEG_INFINITY;
            }
        }
    }
    if c.min_p > 0.0 {
        let p = softmax(&s);
        let pmax = p.iter().copied().fold(0.0, f64::max);
        for (i, &pi) in p.iter().enumerate() {
            if pi < c.min_p * pmax {
                s[i] = f64::NEG_INFINITY;
            }
        }
    }
    softmax(&s)
}

fn configs() -> Vec<(&'static str, SamplerConfig)> {
    vec![
        ("plain", SamplerConfig::new()),
        (
            "temperature 0.6",
            SamplerConfig::new().with_temperature(0.6),
        ),
        (
            "temperature 1.7",
            SamplerConfig::new().with_temperature(1.7),
        ),
        ("top-k 4", SamplerConfig::new().with_top_k(Some(4))),
        ("top-p 0.8", SamplerConfig::new().with_top_p(0.8)),
        ("top-p 0.25", SamplerConfig::new().with_top_p(0.25)),
        ("min-p 0.15", SamplerConfig::new().with_min_p(0.15)),
        (
            "all",
            SamplerConfig::new()
                .with_temperature(0.8)
                .with_top_k(Some(6))
                .with_top_p(0.9)
                .with_min_p(0.05),
        ),
    ]
}

#[test]
fn filtered_distribution_matches_the_reference() {
    for (name, c) in configs() {
        let want = reference(&c, &LOGITS);
        let got = Sampler::new(c).unwrap().distribution(&LOGITS, &[]);
        // The sampler's processors run in f32 (like HF's) and its exponential has a relative
        // error below 2.5e-7; the reference is f64 throughout.
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() < 1e-6, "{name}: token {i}: {g} vs {w}");
        }
        let kept = want.iter().filter(|&&p| p > 0.0).count();
        match name {
            "top-k 4" => assert_eq!(kept, 4),
            "top-p 0.25" => assert_eq!(kept, 1),
            "top-p 0.8" => assert!(kept > 2 && kept < 8),
            "plain" => assert_eq!(kept, LOGITS.len()),
            _ => {}
        }
    }
}

#[test]
fn empirical_frequencies_match_within_total_variation() {
    const DRAWS: usize = 100_000;
    for (name, c) in configs() {
        let want = reference(&c, &LOGITS);
        let sampler = Sampler::new(c).unwrap();
        let mut counts = [0usize; LOGITS.len()];
        let mut rng = row_rng(11, 0, 0);
        for _ in 0..DRAWS {
            let t = sampler.sample_row(&LOGITS, &[], &mut rng);
            counts[t.id as usize] += 1;
            // The reported log-prob is that of the final distribution.
            assert!((t.logprob as f64 - want[t.id as usize].ln()).abs() < 1e-5);
        }
        let tv: f64 = counts
            .iter()
            .zip(&want)
            .map(|(&n, &p)| (n as f64 / DRAWS as f64 - p).abs())
            .sum::<f64>()
            / 2.0;
        // E[TV] is about 0.004 for 12 tokens and 1e5 draws; 0.01 is > 5 standard deviations.
        assert!(tv < 0.01, "{name}: total variation {tv}, counts {counts:?}");
        for (i, (&n, &p)) in counts.iter().zip(&want).enumerate() {
            if p == 0.0 {
                assert_eq!(n, 0, "{name}: filtered token {i} was drawn");
            }
        }
    }
}

#[test]
fn same_seed_same_tokens_and_rows_are_independent() {
    let device = Default::default();
    let sampler = Sampler::new(SamplerConfig::new().with_top_p(0.95)).unwrap();
    let rows: Vec<f32> = (0..4).flat_map(|_| LOGITS).collect();
    let logits = Tensor::<Flex, 1>::from_floats(rows.as_slice(), &device).reshape([4, 12]);
    let draw = |seed: u64, streams: &[u64]| -> Vec<Vec<u32>> {
        let mut rngs: Vec<_> = streams.iter().map(|&s| row_rng(seed, s, 0)).collect();
        (0..20)
            .map(|_| {
                sampler
                    .sample(logits.clone().narrow(0, 0, streams.len()), &mut rngs, &[])
                    .unwrap()
                    .iter()
                    .map(|t| t.id)
                    .collect()
            })
            .collect()
    };
    let a = draw(5, &[0, 1, 2, 3]);
    assert_eq!(a, draw(5, &[0, 1, 2, 3]));
    assert_ne!(a, draw(6, &[0, 1, 2, 3]));
    // Stream 2 alone draws what it drew as the third row of a batch of four.
    let alone = draw(5, &[2]);
    for (step, row) in a.iter().enumerate() {
        assert_eq!(row[2], alone[step][0]);
    }
    // Different streams give different sequences.
    let col = |j: usize| a.iter().map(|r| r[j]).collect::<Vec<_>>();
    assert_ne!(col(0), col(1));
    // Mismatched RNG count is an error, not a panic.
    let mut one = vec![row_rng(0, 0, 0)];
    assert!(sampler.sample(logits, &mut one, &[]).is_err());
}
