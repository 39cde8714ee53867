//! Stop conditions: stop token ids and stop strings.

use kiln_data::Tokenizer;

use crate::error::{Error, Result};
use crate::output::FinishReason;

/// Decides after each generated token whether a response is finished.
///
/// Stop strings are matched on the decoded text of a short window of the last tokens: a window
/// of `max_stop_bytes + 1` tokens always covers a stop string that ends in the newest token (every
/// non-special token decodes to at least one byte), and a string that ended earlier was already
/// caught then, so each step costs one small decode instead of decoding the whole response.
#[derive(Debug, Clone)]
pub struct StopCriteria {
    stop_ids: Vec<u32>,
    stop_strings: Vec<String>,
    window: usize,
    max_new_tokens: usize,
}

impl StopCriteria {
    /// Builds the criteria.
    ///
    /// # Errors
    /// [`Error::MissingTokenizer`] when stop strings are given but no tokenizer.
    pub fn new(
        stop_ids: &[u32],
        stop_strings: &[String],
        max_new_tokens: usize,
        tokenizer: Option<&Tokenizer>,
    ) -> Result<Self> {
        if !stop_strings.is_empty() && tokenizer.is_none() {
            return Err(Error::MissingTokenizer("stop strings"));
        }
        let window = stop_strings.iter().map(String::len).max().unwrap_or(0) + 1;
        Ok(Self {
            stop_ids: stop_ids.to_vec(),
            stop_strings: stop_strings.to_vec(),
            window,
            max_new_tokens,
        })
    }

    /// Whether `tokens` (the response so far, the newest last) is finished and why. A stop token
    /// wins over a stop string, which wins over the length limit.
    ///
    /// # Errors
    /// A tokenizer error while decoding the window.
    pub fn check(
        &self,
        tokens: &[u32],
        tokenizer: Option<&Tokenizer>,
    ) -> Result<Option<FinishReason>> {
        let Some(&last) = tokens.last() else {
            return Ok(None);
        };
        if self.stop_ids.contains(&last) {
            return Ok(Some(FinishReason::StopToken));
        }
        if let (false, Some(tok)) = (self.stop_strings.is_empty(), tokenizer) {
            let start = tokens.len().saturating_sub(self.window);
            let text = tok.decode(&tokens[start..], false)?;
            if self.stop_strings.iter().any(|s| text.contains(s.as_str())) {
                return Ok(Some(FinishReason::StopString));
            }
        }
        if tokens.len() >= self.max_new_tokens {
            return Ok(Some(FinishReason::Length));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_token_then_string_then_length() {
        let tok = Tokenizer::builtin_tiny().unwrap();
        let ids = tok.encode("hello world. and more").unwrap();
        let stop = StopCriteria::new(&[2], &["world.".into()], 100, Some(&tok)).unwrap();
        // Find the first prefix whose text contains the stop string.
        let first = (1..=ids.len())
            .find(|&n| tok.decode(&ids[..n], false).unwrap().contains("world."))
            .unwrap();
        for n in 1..first {
            assert_eq!(stop.check(&ids[..n], Some(&tok)).unwrap(), None, "{n}");
        }
        assert_eq!(
            stop.check(&ids[..first], Some(&tok)).unwrap(),
            Some(FinishReason::StopString)
        );
        let mut with_eos = ids[..2].to_vec();
        with_eos.push(2);
        assert_eq!(
            stop.check(&with_eos, Some(&tok)).unwrap(),
            Some(FinishReason::StopToken)
        );
        let short = StopCriteria::new(&[2], &[], 2, None).unwrap();
        assert_eq!(
            short.check(&ids[..2], None).unwrap(),
            Some(FinishReason::Length)
        );
        assert!(matches!(
            StopCriteria::new(&[], &["x".into()], 2, None),
            Err(Error::MissingTokenizer(_))
        ));
    }
}
