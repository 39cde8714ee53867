//! Truncation rules: keep the end of the prompt, the start of the completion (RECIPE.md 3d).

use burn::config::Config;

use crate::error::Error;

/// Length limits for prompt + completion sequences (reference: 1000 / 2048 tokens for DPO).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub struct TruncationConfig {
    /// The prompt keeps at most its last `max_prompt_len` tokens.
    #[config(default = 1000)]
    pub max_prompt_len: usize,
    /// Prompt + completion keep at most `max_total_len` tokens (the completion is cut at its end).
    #[config(default = 2048)]
    pub max_total_len: usize,
}

impl Default for TruncationConfig {
    /// [`Self::new`]: 1000 / 2048 tokens.
    fn default() -> Self {
        Self::new()
    }
}

impl TruncationConfig {
    /// Checks `0 < max_prompt_len < max_total_len`, so every completion keeps at least one token.
    pub fn validate(&self) -> crate::Result<()> {
        if self.max_prompt_len == 0 || self.max_prompt_len >= self.max_total_len {
            return Err(Error::InvalidConfig(format!(
                "truncation needs 0 < max_prompt_len ({}) < max_total_len ({})",
                self.max_prompt_len, self.max_total_len
            )));
        }
        Ok(())
    }
}

/// The last `max` items of `ids` (left truncation).
pub fn keep_end<T>(ids: &[T], max: usize) -> &[T] {
    &ids[ids.len().saturating_sub(max)..]
}

/// The first `max` items of `ids` (right truncation).
pub fn keep_start<T>(ids: &[T], max: usize) -> &[T] {
    &ids[..ids.len().min(max)]
}

/// Truncates a prompt/completion pair: the prompt keeps its last `max_prompt_len` tokens, then the
/// completion (and its mask) keeps its first `max_total_len - prompt_len` tokens. Returns the new
/// prompt, completion and completion mask.
pub fn truncate_prompt_completion<'a>(
    prompt: &'a [u32],
    completion: &'a [u32],
    completion_mask: &'a [bool],
    config: &TruncationConfig,
) -> (&'a [u32], &'a [u32], &'a [bool]) {
    let p = keep_end(prompt, config.max_prompt_len);
    let room = config.max_total_len.saturating_sub(p.len());
    (
        p,
        keep_start(completion, room),
        keep_start(completion_mask, room),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_prompt_end_and_completion_start() {
        let prompt: Vec<u32> = (0..10).collect();
        let completion: Vec<u32> = (100..110).collect();
        let mask = vec![true; 10];
        let cfg = TruncationConfig {
            max_prompt_len: 4,
            max_total_len: 7,
        };
        let (p, c, m) = truncate_prompt_completion(&prompt, &completion, &mask, &cfg);
        assert_eq!(p, &[6, 7, 8, 9]);
        assert_eq!(c, &[100, 101, 102]);
        assert_eq!(m.len(), 3);
        let cfg = TruncationConfig {
            max_prompt_len: 20,
            max_total_len: 40,
        };
        let (p, c, _) = truncate_prompt_completion(&prompt, &completion, &mask, &cfg);
        assert_eq!((p.len(), c.len()), (10, 10));
    }

    #[test]
    fn validate_rejects_bad_limits() {
        assert!(
            TruncationConfig {
                max_prompt_len: 8,
                max_total_len: 8
            }
            .validate()
            .is_err()
        );
        assert!(
            TruncationConfig {
                max_prompt_len: 0,
                max_total_len: 8
            }
            .validate()
            .is_err()
        );
        assert!(TruncationConfig::default().validate().is_ok());
        assert_eq!(keep_end(&[1, 2, 3], 5), &[1, 2, 3]);
        assert_eq!(keep_start(&[1, 2, 3], 2), &[1, 2]);
    }
}
