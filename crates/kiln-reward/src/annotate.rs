//! The annotate stage: `K` generations per prompt + any [`RewardModel`] -> annotated records
//! (`{"prompt", "responses", "rewards"}`), with non-finite scores reported by prompt.
//!
//! Prompts are scored in chunks through [`RewardModel::score_groups`], so pointwise models batch
//! across prompts and the pairwise preference model compares the responses of each prompt.
//!
//! ```
//! use kiln_data::GenerationRecord;
//! use kiln_reward::annotate::annotate;
//! use kiln_reward::Prompt;
//!
//! let words = |_: &Prompt, r: &str| r.split_whitespace().count() as f32;
//! let records = vec![GenerationRecord::new(
//!     "Say something.".into(),
//!     vec!["one".into(), "two words".into()],
//! )];
//! let annotated = annotate(&words, &records)?;
//! assert_eq!(annotated[0].rewards, [1.0, 2.0]);
//! # Ok::<(), kiln_reward::Error>(())
//! ```

use kiln_data::{AnnotatedRecord, GenerationRecord};

use crate::error::{Error, Result};
use crate::model::{Prompt, RewardModel};

/// Prompts scored per [`RewardModel::score_groups`] call (progress is reported between calls).
pub const PROMPTS_PER_CALL: usize = 16;

/// Scores every response of every record; see [`annotate_with_progress`].
///
/// # Errors
/// As [`annotate_with_progress`].
pub fn annotate(
    rm: &dyn RewardModel,
    records: &[GenerationRecord],
) -> Result<Vec<AnnotatedRecord>> {
    annotate_with_progress(rm, records, |_, _| {})
}

/// Scores every response of every record with `rm`, calling `progress(prompts_done, total)` after
/// each chunk of [`PROMPTS_PER_CALL`] prompts. Rewards are stored as `f64` in response order.
///
/// # Errors
/// [`Error::NonFiniteReward`] naming the first prompt (index and text) and response whose score
/// is NaN or infinite; [`Error::InvalidInput`] when the model returns the wrong number of scores;
/// the model's own errors.
pub fn annotate_with_progress(
    rm: &dyn RewardModel,
    records: &[GenerationRecord],
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<AnnotatedRecord>> {
    let mut out = Vec::with_capacity(records.len());
    for (c, chunk) in records.chunks(PROMPTS_PER_CALL).enumerate() {
        let groups: Vec<(&Prompt, &[String])> = chunk
            .iter()
            .map(|r| (&r.prompt, r.responses.as_slice()))
            .collect();
        let scores = rm.score_groups(&groups)?;
        if scores.len() != chunk.len() {
            return Err(Error::InvalidInput(format!(
                "reward model returned {} score lists for {} prompts",
                scores.len(),
                chunk.len()
            )));
        }
        for (j, (record, rewards)) in chunk.iter().zip(scores).enumerate() {
            let index = c * PROMPTS_PER_CALL + j;
            check_scores(index, record, &rewards)?;
            out.push(AnnotatedRecord {
                prompt: record.prompt.clone(),
                responses: record.responses.clone(),
                rewards: rewards.into_iter().map(f64::from).collect(),
            });
        }
        progress(out.len(), records.len());
    }
    Ok(out)
}

/// Checks one record's scores: one per response, all finite.
///
/// # Errors
/// [`Error::NonFiniteReward`] or [`Error::InvalidInput`] naming the record.
pub fn check_scores(index: usize, record: &GenerationRecord, rewards: &[f32]) -> Result<()> {
    if rewards.len() != record.responses.len() {
        return Err(Error::InvalidInput(format!(
            "prompt {index}: {} scores for {} responses",
            rewards.len(),
            record.responses.len()
        )));
    }
    if let Some((response, &value)) = rewards.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFiniteReward {
            index,
            prompt: short(&record.prompt.text(), 80),
            response,
            value,
        });
    }
    Ok(())
}

/// `text` cut to `max` characters (with an ellipsis when cut).
pub fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max).collect::<String>() + "..."
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Vec<GenerationRecord> {
        (0..n)
            .map(|i| {
                GenerationRecord::new(
                    format!("prompt {i}").into(),
                    (0..3).map(|k| "x".repeat(k + i)).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn annotates_in_order_across_chunks_with_progress() {
        let len = |_: &Prompt, r: &str| r.len() as f32;
        let recs = records(PROMPTS_PER_CALL + 5);
        let mut seen = Vec::new();
        let out = annotate_with_progress(&len, &recs, |d, t| seen.push((d, t))).unwrap();
        assert_eq!(out.len(), recs.len());
        for (i, r) in out.iter().enumerate() {
            assert_eq!(r.rewards, [i as f64, (i + 1) as f64, (i + 2) as f64]);
            assert_eq!(r.responses, recs[i].responses);
        }
        assert_eq!(seen, [(16, 21), (21, 21)]);
    }

    #[test]
    fn a_non_finite_score_names_the_prompt_and_response() {
        let bad = |p: &Prompt, r: &str| {
            if p.text() == "prompt 3" && r.len() == 4 {
                f32::NAN
            } else {
                1.0
            }
        };
        let err = annotate(&bad, &records(6)).unwrap_err();
        match &err {
            Error::NonFiniteReward {
                index, response, ..
            } => assert_eq!((*index, *response), (3, 1)),
            other => panic!("{other}"),
        }
        let text = err.to_string();
        assert!(text.contains("prompt 3") && text.contains("NaN"), "{text}");
    }
}
