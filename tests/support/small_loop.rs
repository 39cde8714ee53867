//! The built-in loop's plumbing configuration, a few seconds a run: the loop tests and the
//! multi-process tests run the same one.

use crate::iterative_dpo::LoopConfig;
use std::path::PathBuf;

/// A tiny policy and setup, two online iterations, writing to `out`.
pub fn small(out: PathBuf) -> LoopConfig {
    LoopConfig {
        out,
        iterations: 2,
        k: 4,
        prompts_per_iteration: 16,
        eval_prompts: 16,
        max_new_tokens: 12,
        hidden_size: 32,
        layers: 1,
        sft_examples: 400,
        sft_steps: 120,
        rm_pairs: 300,
        rm_steps: 40,
        batch_size: 16,
        policy_epochs: 1,
        ..LoopConfig::default()
    }
}
