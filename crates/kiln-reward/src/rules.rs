//! Rule-based reward wrappers: a length penalty `r - lambda * len(response)`.
//!
//! Plain rules need no type: any closure `Fn(&Prompt, &str) -> f32` is already a
//! [`RewardModel`].

use kiln_data::{LengthUnit, Tokenizer};

use crate::error::{Error, Result};
use crate::model::{Prompt, RewardModel};

/// `inner(prompt, response) - lambda * len(response)`.
#[derive(Debug, Clone)]
pub struct LengthPenalty<R> {
    inner: R,
    lambda: f32,
    unit: LengthUnit,
    tokenizer: Option<Box<Tokenizer>>,
}

impl<R: RewardModel> LengthPenalty<R> {
    /// Wraps `inner` with penalty `lambda >= 0` per unit of length (`tokenizer` counts tokens
    /// for [`LengthUnit::Tokens`]).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a negative or non-finite `lambda`, or `Tokens` without a
    /// tokenizer.
    pub fn new(
        inner: R,
        lambda: f32,
        unit: LengthUnit,
        tokenizer: Option<Tokenizer>,
    ) -> Result<Self> {
        if unit == LengthUnit::Tokens && tokenizer.is_none() {
            return Err(Error::InvalidConfig(
                "a length penalty in tokens needs the tokenizer".into(),
            ));
        }
        if !(lambda >= 0.0 && lambda.is_finite()) {
            return Err(Error::InvalidConfig(format!(
                "length penalty lambda must be >= 0, got {lambda}"
            )));
        }
        Ok(Self {
            inner,
            lambda,
            unit,
            tokenizer: tokenizer.map(Box::new),
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
            .map(|(s, r)| {
                Ok(s - self.lambda * self.unit.measure(&r, self.tokenizer.as_deref())? as f32)
            })
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
        let chars = LengthPenalty::new(base, 0.5, LengthUnit::Chars, None).unwrap();
        assert_eq!(
            chars.score(&p, "héllo").unwrap(),
            10.0 - 2.5,
            "characters, not bytes"
        );
        let tok = Tokenizer::builtin_tiny().unwrap();
        let n = tok.encode("hello world").unwrap().len() as f32;
        let tokens = LengthPenalty::new(base, 1.0, LengthUnit::Tokens, Some(tok)).unwrap();
        assert_eq!(tokens.score(&p, "hello world").unwrap(), 10.0 - n);
        let v = chars
            .score_responses(&p, &["ab".into(), "abcd".into()])
            .unwrap();
        assert_eq!(v, vec![9.0, 8.0]);
        assert!(LengthPenalty::new(base, -1.0, LengthUnit::Chars, None).is_err());
    }
}
