//! Shared parts of the measurement binaries: random DPO pairs and a counting allocator's readings
//! (the SmolLM2-135M shape is `DecoderConfig::smollm2_135m`).
#![allow(dead_code)]

use kiln_data::Example;

/// `n` pairs of `len`-token sequences (random ids from a fixed LCG; the first `prompt` tokens
/// are the prompt, the rest the response).
pub fn random_pairs(n: usize, len: usize, prompt: usize, vocab: usize) -> Vec<(Example, Example)> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        ((state >> 33) % (vocab as u64 - 3)) as u32 + 3
    };
    let mut example = || Example {
        ids: (0..len).map(|_| next()).collect(),
        loss_mask: (0..len).map(|i| i >= prompt).collect(),
    };
    (0..n).map(|_| (example(), example())).collect()
}

/// Bytes as MiB.
pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Median and range of a list of seconds, as `median (min-max)`.
pub fn spread(times: &[f64]) -> String {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    match t.len() {
        0 => "-".into(),
        1 => format!("{:.2}", t[0]),
        n => format!("{:.2} ({:.2}-{:.2})", t[n / 2], t[0], t[n - 1]),
    }
}
