//! [`SelectionConfig`]: how [`select_pairs`](crate::pairs::select_pairs) picks one pair per
//! prompt.

use burn::config::Config;

use crate::pairs::SelectionStrategy;

/// Settings of [`select_pairs`](crate::pairs::select_pairs).
#[derive(Config, Debug, Copy, PartialEq)]
pub struct SelectionConfig {
    /// The strategy.
    #[config(default = "SelectionStrategy::MaxMin")]
    pub strategy: SelectionStrategy,
    /// K: prompts with fewer responses are reported and skipped (at least 2 is always required).
    #[config(default = 2)]
    pub min_responses: usize,
    /// Seed of the per-prompt random streams.
    #[config(default = 0)]
    pub seed: u64,
}

impl Default for SelectionConfig {
    /// [`Self::new`]: best vs worst, at least two responses, seed 0.
    fn default() -> Self {
        Self::new()
    }
}
