//! Shared parts of the measurement binaries: the SmolLM2-135M shape, random DPO pairs, and a
//! counting allocator's readings.
#![allow(dead_code)]

use kiln_data::Example;
use kiln_model::LlamaConfig;

/// SmolLM2-135M-Instruct's architecture (HF `config.json`): hidden 576, intermediate 1536, 30
/// layers, GQA 9/3, head_dim 64, vocab 49,152, rope theta 1e5, tied embeddings.
pub fn smollm2_135m() -> LlamaConfig {
    let mut c = LlamaConfig::tiny(49_152, 576);
    c.intermediate_size = 1536;
    c.num_hidden_layers = 30;
    c.num_attention_heads = 9;
    c.num_key_value_heads = 3;
    c.head_dim = 64;
    c.rms_norm_eps = 1e-5;
    c.rope_theta = 100_000.0;
    c.rope_scaling = None;
    c.max_position_embeddings = 8192;
    c.tie_word_embeddings = true;
    c.bos_token_id = Some(1);
    c.eos_token_id = vec![2];
    c.pad_token_id = Some(2);
    c
}

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
