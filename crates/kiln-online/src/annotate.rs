//! The annotate stage's work: every prompt's `K` responses scored by the reward model, on every
//! peer of a [`Placement`] in whole blocks of [`PROMPTS_PER_CALL`] prompts (what the model scores
//! as one batch), so the rewards are the same bits whatever the number of peers.

use std::collections::BTreeMap;
use std::sync::Mutex;

use burn::tensor::backend::AutodiffBackend;
use kiln_data::{AnnotatedRecord, GenerationRecord};
use kiln_reward::RewardModel;
use kiln_reward::annotate::{PROMPTS_PER_CALL, annotate_with_progress};
use kiln_train::Placement;

use crate::error::Result;
use crate::observer::Observer;

/// The annotated records of `records` (in order), scored by `rm` on every peer of `placement`.
/// Every rank must call it; each gets every record. Errors name the prompt by its index in
/// `records`.
///
/// # Errors
/// The reward model's (a non-finite reward names the prompt and response); a peer thread that
/// panicked; the gather's.
pub fn annotate_on<A: AutodiffBackend>(
    placement: &Placement<A>,
    rm: &(dyn RewardModel + Sync),
    records: &[GenerationRecord],
    observer: &dyn Observer,
    label: &str,
) -> Result<Vec<AnnotatedRecord>> {
    let bar = observer.bar(label, records.len());
    let done: Mutex<BTreeMap<usize, usize>> = Mutex::default();
    let out = placement.map_blocks("annotate", records.len(), PROMPTS_PER_CALL, |range| {
        let offset = range.start;
        annotate_with_progress(rm, &records[range], |n, _| {
            if let Ok(mut d) = done.lock() {
                d.insert(offset, n);
                bar.set(d.values().sum());
            }
        })
        .map_err(|e| match e {
            kiln_reward::Error::NonFiniteReward {
                index,
                prompt,
                response,
                value,
            } => kiln_reward::Error::NonFiniteReward {
                index: index + offset,
                prompt,
                response,
                value,
            },
            e => e,
        })
        .map_err(crate::Error::from)
    });
    bar.finish();
    out
}
