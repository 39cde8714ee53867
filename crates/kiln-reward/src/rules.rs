//! Rule-based reward wrappers: a length penalty `r - lambda * len(response)`.
//!
//! Plain rules need no type: any closure `Fn(&Prompt, &str) -> f32` is already a
//! [`RewardModel`].

use kiln_data::Tokenizer;

use crate::error::{Error, Result};
use crate::model::{Prompt, RewardModel};

/// How a response's length is measured.
#[derive(Debug, Clone)]
pub enum LengthMeasure {
    /// Unicode characters (what the reference code counts for `max_min_p`).
    Chars,
    /// Tokens of the response text under this tokenizer (no special tokens).
    Tokens(Box<Tokenizer>),
}

impl LengthMeasure {
    /// The length of `response`.
    ///
    /// # Errors
    /// Tokenisation errors.
    pub fn length(&self, response: &str) -> Result<usize> {
        match self {
            LengthMeasure::Chars => Ok(response.chars().count()),
            LengthMeasure::Tokens(tok) => Ok(tok.encode(response)?.len()),
        }
    }
}

/// `inner(prompt, response) - lambda * len(response)`.
#[derive(Debug, Clone)]
pub struct LengthPenalty<R> {
    inner: R,
    lambda: f32,
    measure: LengthMeasure,
}

impl<R: RewardModel> LengthPenalty<R> {
    /// Wraps `inner` with penalty `lambda >= 0` per unit of `measure`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a negative or non-finite `lambda`.
    pub fn new(inner: R, lambda: f32, measure: LengthMeasure) -> Result<Self> {
        if !(lambda >= 0.0 && lambda.is_finite()) {
            return Err(Error::InvalidConfig(format!(
                "length penalty lambda must be >= 0, got {lambda}"
            )));
        }
        Ok(Self {
            inner,
            lambda,
            measure,
        })
    }

    /// The wrapped model.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    fn penalise(
        &self,
        scores: Vec<f32>,
        responses: impl Iterator<Item = String>,
    ) -> Result<Vec<f32>> {
        scores
            .into_iter()
            .zip(responses)
            .map(|(s, r)| Ok(s - self.lambda * self.measure.length(&r)? as f32))
            .collect()
    }
}

impl<R: RewardModel> RewardModel for LengthPenalty<R> {
    fn score_batch(&self, items: &[(&Prompt, &str)]) -> Result<Vec<f32>> {
        let scores = self.inner.score_batch(items)?;
        self.penalise(scores, items.iter().map(|(_, r)| r.to_string()))
    }

    fn score_responses(&self, prompt: &Prompt, responses: &[String]) -> Result<Vec<f32>> {
        let scores = self.inner.score_responses(prompt, responses)?;
        self.penalise(scores, responses.iter().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalises_by_chars_and_tokens() {
        let base = |_: &Prompt, _: &str| 10.0f32;
        let p = Prompt::from("q");
        let chars = LengthPenalty::new(base, 0.5, LengthMeasure::Chars).unwrap();
        assert_eq!(
            chars.score(&p, "héllo").unwrap(),
            10.0 - 2.5,
            "characters, not bytes"
        );
        let tok = Tokenizer::builtin_tiny().unwrap();
        let n = tok.encode("hello world").unwrap().len() as f32;
        let tokens = LengthPenalty::new(base, 1.0, LengthMeasure::Tokens(Box::new(tok))).unwrap();
        assert_eq!(tokens.score(&p, "hello world").unwrap(), 10.0 - n);
        let v = chars
            .score_responses(&p, &["ab".into(), "abcd".into()])
            .unwrap();
        assert_eq!(v, vec![9.0, 8.0]);
        assert!(LengthPenalty::new(base, -1.0, LengthMeasure::Chars).is_err());
    }
}
