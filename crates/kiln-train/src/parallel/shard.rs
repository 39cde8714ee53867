//! Sharding: the one way Kiln cuts a list of work among peers (pure range maths), and
//! [`Placement::map_blocks`](super::Placement::map_blocks), which maps whole blocks of it over
//! this process's peers (threads) and the other processes of a run.
//!
//! Work is cut in **blocks** (what one peer processes as one batch: a reward model's batch, a
//! reference forward pass) and every peer takes a contiguous run of whole blocks, so each block
//! is computed the same way whatever the number of peers and processes: the results are the same
//! bits as one peer's.

use std::ops::Range;

use crate::error::Error;

/// The indices of `0..len` that peer `rank` of `world` takes: contiguous shards whose sizes
/// differ by at most one (the first `len % world` shards are one longer).
pub fn shard(len: usize, rank: usize, world: usize) -> Range<usize> {
    let world = world.max(1);
    let (base, extra) = (len / world, len % world);
    let start = rank * base + rank.min(extra);
    let size = base + usize::from(rank < extra);
    start.min(len)..(start + size).min(len)
}

/// `parts` contiguous ranges covering `0..len`, each made of whole `block`s (the first ones one
/// block longer when the blocks do not divide evenly; the last block may be short); empty ranges
/// for parts without a block. With `block = 1` part `p` is [`shard`]`(len, p, parts)`.
pub fn block_shards(len: usize, block: usize, parts: usize) -> Vec<Range<usize>> {
    let block = block.max(1);
    let blocks = len.div_ceil(block);
    (0..parts.max(1))
        .map(|p| {
            let b = shard(blocks, p, parts);
            (b.start * block).min(len)..(b.end * block).min(len)
        })
        .collect()
}

/// Runs `work` on every non-empty range on its own scoped thread (on this thread when there is
/// one) and returns the parts concatenated in range order. A thread that panicked is
/// [`Error::PeerPanicked`] naming `what`.
///
/// # Errors
/// The first range's error in range order; [`Error::PeerPanicked`].
pub fn on_threads<T: Send, E: Send + From<Error>>(
    what: &str,
    ranges: &[Range<usize>],
    work: impl Fn(Range<usize>) -> std::result::Result<Vec<T>, E> + Sync,
) -> std::result::Result<Vec<T>, E> {
    let live: Vec<Range<usize>> = ranges.iter().filter(|r| !r.is_empty()).cloned().collect();
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
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::PeerPanicked {
                        what: what.to_string(),
                    }
                    .into())
                })
            })
            .collect()
    });
    let mut all = Vec::new();
    for part in parts {
        all.extend(part?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::{block_shards, on_threads, shard};
    use crate::error::Error;

    #[test]
    fn shards_cover_the_batch_once_and_differ_by_at_most_one() {
        for len in 0..12 {
            for world in 1..5 {
                let parts: Vec<_> = (0..world).map(|r| shard(len, r, world)).collect();
                let all: Vec<usize> = parts.iter().flat_map(Clone::clone).collect();
                assert_eq!(all, (0..len).collect::<Vec<_>>(), "{len} / {world}");
                let sizes: Vec<usize> = parts.iter().map(|p| p.len()).collect();
                let (min, max) = (sizes.iter().min(), sizes.iter().max());
                assert!(max.zip(min).is_none_or(|(a, b)| a - b <= 1));
                assert_eq!(block_shards(len, 1, world), parts, "block 1 is shard");
            }
        }
    }

    #[test]
    fn block_shards_are_whole_blocks_covering_the_input_once() {
        for len in 0..40 {
            for block in 1..6 {
                for parts in 1..5 {
                    let shards = block_shards(len, block, parts);
                    assert_eq!(shards.len(), parts);
                    let all: Vec<usize> = shards.iter().flat_map(Clone::clone).collect();
                    assert_eq!(all, (0..len).collect::<Vec<_>>());
                    for s in shards.iter().filter(|s| s.end < len) {
                        assert_eq!(s.len() % block, 0, "{len} {block} {parts}: {s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn threads_return_parts_in_order_and_a_panic_is_one_named_error() {
        let ranges = block_shards(10, 3, 3);
        let got: Vec<usize> =
            on_threads::<_, Error>("count", &ranges, |r| Ok(r.collect())).unwrap();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        let err = on_threads::<usize, Error>("scoring", &ranges, |r| {
            if r.start == 6 {
                panic!("peer dies");
            }
            Ok(r.collect())
        })
        .unwrap_err();
        assert!(matches!(err, Error::PeerPanicked { .. }), "{err}");
        assert!(err.to_string().contains("scoring"), "{err}");
    }
}
