//! Scoring on several peers (threads of this process sharing one reward model): each peer takes a
//! contiguous run of whole blocks, and the results come back in input order. A block is what one
//! peer scores as one batch, so the scores are the same bits for any number of peers.
//!
//! ```
//! use kiln_data::GenerationRecord;
//! use kiln_reward::Prompt;
//! use kiln_reward::parallel::annotate_parallel;
//!
//! let words = |_: &Prompt, r: &str| r.split_whitespace().count() as f32;
//! let records: Vec<GenerationRecord> = (0..40)
//!     .map(|i| GenerationRecord::new("Say something.".into(), vec!["a b".repeat(i % 3 + 1)]))
//!     .collect();
//! let one = annotate_parallel(&words, &records, 1, |_, _| {})?;
//! let three = annotate_parallel(&words, &records, 3, |_, _| {})?;
//! assert_eq!(one, three);
//! # Ok::<(), kiln_reward::Error>(())
//! ```

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_data::{AnnotatedRecord, GenerationRecord};

use crate::annotate::{PROMPTS_PER_CALL, annotate_with_progress};
use crate::error::{Error, Result};
use crate::model::{Prompt, RewardModel};

/// `peers` contiguous ranges covering `0..len`, each made of whole `block`s (the first ones one
/// block longer when the blocks do not divide evenly); empty ranges for peers without a block.
pub fn block_shards(len: usize, block: usize, peers: usize) -> Vec<Range<usize>> {
    let (block, peers) = (block.max(1), peers.max(1));
    let blocks = len.div_ceil(block);
    let (base, extra) = (blocks / peers, blocks % peers);
    let mut start = 0;
    (0..peers)
        .map(|p| {
            let n = base + usize::from(p < extra);
            let range = (start * block).min(len)..((start + n) * block).min(len);
            start += n;
            range
        })
        .collect()
}

/// Runs `work` on each non-empty shard on its own thread (on this one for a single shard) and
/// returns the parts concatenated in shard order; a thread that panicked becomes `panicked()`.
///
/// # Errors
/// The first shard's error in shard order.
pub fn on_peers<T: Send, E: Send>(
    shards: &[Range<usize>],
    work: impl Fn(Range<usize>) -> std::result::Result<Vec<T>, E> + Sync,
    panicked: impl Fn() -> E,
) -> std::result::Result<Vec<T>, E> {
    let live: Vec<Range<usize>> = shards.iter().filter(|r| !r.is_empty()).cloned().collect();
    if live.len() <= 1 {
        return live.into_iter().try_fold(Vec::new(), |mut all, r| {
            all.extend(work(r)?);
            Ok(all)
        });
    }
    let work = &work;
    let parts: Vec<std::result::Result<Vec<T>, E>> = std::thread::scope(|s| {
        let handles: Vec<_> = live.into_iter().map(|r| s.spawn(move || work(r))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(panicked())))
            .collect()
    });
    let mut all = Vec::new();
    for part in parts {
        all.extend(part?);
    }
    Ok(all)
}

fn peer_panicked() -> Error {
    Error::InvalidInput("a scoring peer panicked".into())
}

/// [`annotate_with_progress`] on `peers` threads, each on whole chunks of [`PROMPTS_PER_CALL`]
/// prompts; `progress(prompts_done, total)` counts over all peers. The records are the same as
/// one peer's.
///
/// # Errors
/// As [`annotate_with_progress`], the prompt index counted in the whole input.
pub fn annotate_parallel(
    rm: &(dyn RewardModel + Sync),
    records: &[GenerationRecord],
    peers: usize,
    progress: impl Fn(usize, usize) + Sync,
) -> Result<Vec<AnnotatedRecord>> {
    let shards = block_shards(records.len(), PROMPTS_PER_CALL, peers);
    let done: Vec<AtomicUsize> = shards.iter().map(|_| AtomicUsize::new(0)).collect();
    let work = |range: Range<usize>| {
        let me = shards.iter().position(|s| *s == range).unwrap_or(0);
        let offset = range.start;
        annotate_with_progress(rm, &records[range], |n, _| {
            done[me].store(n, Ordering::Relaxed);
            let all = done.iter().map(|d| d.load(Ordering::Relaxed)).sum();
            progress(all, records.len());
        })
        .map_err(|e| match e {
            Error::NonFiniteReward {
                index,
                prompt,
                response,
                value,
            } => Error::NonFiniteReward {
                index: index + offset,
                prompt,
                response,
                value,
            },
            e => e,
        })
    };
    on_peers(&shards, work, peer_panicked)
}

/// [`RewardModel::score_batch`] on `peers` threads, each on whole runs of `block` items (use the
/// model's batch size, so every forward pass holds what one peer's would).
///
/// # Errors
/// The model's.
pub fn score_parallel(
    rm: &(dyn RewardModel + Sync),
    items: &[(&Prompt, &str)],
    peers: usize,
    block: usize,
) -> Result<Vec<f32>> {
    let shards = block_shards(items.len(), block, peers);
    on_peers(
        &shards,
        |range| rm.score_batch(&items[range]),
        peer_panicked,
    )
}

#[cfg(test)]
mod tests {
    use super::{annotate_parallel, block_shards, score_parallel};
    use crate::{LlamaRewardModel, RewardModel};
    use kiln_data::{Content, GenerationRecord};

    /// The committed tiny HF reward model: 1, 2 and 3 peers give the same bits.
    #[test]
    fn peers_score_a_real_model_like_one_peer() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/reward/tiny-rm"
        );
        let rm = LlamaRewardModel::<burn::backend::Flex>::from_pretrained(dir, &Default::default())
            .unwrap()
            .with_batch_size(3);
        let records: Vec<GenerationRecord> = (0..37)
            .map(|i| {
                let responses = (0..3)
                    .map(|k| format!("answer {i} {}", "x ".repeat(k)))
                    .collect();
                GenerationRecord::new(Content::from(format!("question {i}?")), responses)
            })
            .collect();
        let one = annotate_parallel(&rm, &records, 1, |_, _| {}).unwrap();
        for peers in [2, 3] {
            assert_eq!(
                annotate_parallel(&rm, &records, peers, |_, _| {}).unwrap(),
                one
            );
        }
        let items: Vec<_> = records
            .iter()
            .map(|r| (&r.prompt, r.responses[0].as_str()))
            .collect();
        let single = rm.score_batch(&items).unwrap();
        assert_eq!(score_parallel(&rm, &items, 3, 3).unwrap(), single);
    }

    #[test]
    fn shards_are_whole_blocks_covering_the_input_once() {
        for len in 0..40 {
            for block in 1..6 {
                for peers in 1..5 {
                    let shards = block_shards(len, block, peers);
                    assert_eq!(shards.len(), peers);
                    let all: Vec<usize> = shards.iter().flat_map(Clone::clone).collect();
                    assert_eq!(all, (0..len).collect::<Vec<_>>());
                    for s in shards.iter().filter(|s| s.end < len) {
                        assert_eq!(s.len() % block, 0, "{len} {block} {peers}: {s:?}");
                    }
                }
            }
        }
    }
}
