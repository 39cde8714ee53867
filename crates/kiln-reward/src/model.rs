//! The [`RewardModel`] trait: one scalar per (prompt, response).

use crate::error::Result;

/// A prompt: text (one user turn) or chat messages (`kiln_data::Content`).
pub type Prompt = kiln_data::Content;

/// Anything that scores responses to prompts.
///
/// Implemented by [`LlamaRewardModel`](crate::LlamaRewardModel) (Bradley-Terry head),
/// [`PairwisePreferenceModel`](crate::PairwisePreferenceModel) (comparisons between the
/// responses of one prompt), every closure `Fn(&Prompt, &str) -> f32` (rule-based rewards) and
/// the wrappers of [`rules`](crate::rules).
pub trait RewardModel {
    /// Scores every `(prompt, response)` item, one `f32` each, in order.
    fn score_batch(&self, items: &[(&Prompt, &str)]) -> Result<Vec<f32>>;

    /// Scores one response.
    fn score(&self, prompt: &Prompt, response: &str) -> Result<f32> {
        let v = self.score_batch(&[(prompt, response)])?;
        v.first()
            .copied()
            .ok_or_else(|| crate::Error::InvalidInput("reward model returned no score".into()))
    }

    /// Scores the `K` responses of one prompt (the annotate stage). Models that compare responses
    /// with each other (the pairwise preference model) override this.
    fn score_responses(&self, prompt: &Prompt, responses: &[String]) -> Result<Vec<f32>> {
        let items: Vec<(&Prompt, &str)> = responses.iter().map(|r| (prompt, r.as_str())).collect();
        self.score_batch(&items)
    }

    /// Scores several prompts' responses, one score list per group, in order. The default flattens
    /// every group into one [`Self::score_batch`] call (batched across prompts); models that
    /// compare responses within a prompt override it to call [`Self::score_responses`] per group.
    fn score_groups(&self, groups: &[(&Prompt, &[String])]) -> Result<Vec<Vec<f32>>> {
        let items: Vec<(&Prompt, &str)> = groups
            .iter()
            .flat_map(|(p, rs)| rs.iter().map(move |r| (*p, r.as_str())))
            .collect();
        let flat = self.score_batch(&items)?;
        if flat.len() != items.len() {
            return Err(crate::Error::InvalidInput(format!(
                "reward model returned {} scores for {} responses",
                flat.len(),
                items.len()
            )));
        }
        let mut it = flat.into_iter();
        Ok(groups
            .iter()
            .map(|(_, rs)| it.by_ref().take(rs.len()).collect())
            .collect())
    }

    /// Forward passes (model rows) needed to score `k` responses of one prompt: `k` for
    /// pointwise models; `k (k - 1)` for the pairwise preference model (both orders of every pair).
    fn rows_per_prompt(&self, k: usize) -> usize {
        k
    }
}

/// Every closure `Fn(&Prompt, &str) -> f32` is a (rule-based) reward model.
impl<F: Fn(&Prompt, &str) -> f32> RewardModel for F {
    fn score_batch(&self, items: &[(&Prompt, &str)]) -> Result<Vec<f32>> {
        Ok(items.iter().map(|(p, r)| self(p, r)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closures_are_reward_models() {
        let rm = |_: &Prompt, r: &str| r.matches("yes").count() as f32;
        let p = Prompt::from("question");
        assert_eq!(rm.score(&p, "yes yes").unwrap(), 2.0);
        let v = rm
            .score_responses(&p, &["no".to_string(), "yes".to_string()])
            .unwrap();
        assert_eq!(v, vec![0.0, 1.0]);
        fn takes_dyn(m: &dyn RewardModel) -> f32 {
            m.score(&Prompt::from("q"), "yes").unwrap()
        }
        assert_eq!(takes_dyn(&rm), 1.0);
    }
}
