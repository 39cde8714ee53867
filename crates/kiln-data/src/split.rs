//! Deterministic shuffling, train/eval splitting and mini-batch index plans.

use crate::error::{Error, Result};
use crate::rng::Rng;

/// Shuffles `items` in place with the seeded [`Rng`] (same seed, same order).
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    Rng::new(seed).shuffle(items);
}

/// Shuffles with `seed`, then puts `round(eval_fraction * n)` items in the eval set (at least one
/// when `eval_fraction > 0` and `n >= 2`, and never all of them). Returns `(train, eval)`.
pub fn train_eval_split<T>(
    mut items: Vec<T>,
    eval_fraction: f64,
    seed: u64,
) -> Result<(Vec<T>, Vec<T>)> {
    if !(0.0..1.0).contains(&eval_fraction) {
        return Err(Error::InvalidConfig(format!(
            "eval_fraction must be in [0, 1), got {eval_fraction}"
        )));
    }
    shuffle(&mut items, seed);
    let n = items.len();
    let mut n_eval = (eval_fraction * n as f64).round() as usize;
    if eval_fraction > 0.0 && n >= 2 {
        n_eval = n_eval.clamp(1, n - 1);
    }
    let eval = items.split_off(n - n_eval);
    Ok((items, eval))
}

/// Index batches for one epoch: a seeded permutation of `0..n` cut into batches of `batch_size`
/// (the last one shorter unless `drop_last`). Use `seed + epoch` for a new order every epoch.
pub fn batch_indices(
    n: usize,
    batch_size: usize,
    seed: u64,
    drop_last: bool,
) -> Result<Vec<Vec<usize>>> {
    if batch_size == 0 {
        return Err(Error::InvalidConfig("batch_size must be > 0".into()));
    }
    let mut idx: Vec<usize> = (0..n).collect();
    shuffle(&mut idx, seed);
    Ok(idx
        .chunks(batch_size)
        .filter(|c| !drop_last || c.len() == batch_size)
        .map(<[usize]>::to_vec)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_deterministic_disjoint_and_complete() {
        let (tr, ev) = train_eval_split((0..100).collect::<Vec<_>>(), 0.1, 3).unwrap();
        assert_eq!((tr.len(), ev.len()), (90, 10));
        let (tr2, ev2) = train_eval_split((0..100).collect::<Vec<_>>(), 0.1, 3).unwrap();
        assert_eq!((&tr, &ev), (&tr2, &ev2));
        let mut all: Vec<i32> = tr.iter().chain(&ev).copied().collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        let (_, ev3) = train_eval_split((0..100).collect::<Vec<_>>(), 0.1, 4).unwrap();
        assert_ne!(ev, ev3);
        let (tr, ev) = train_eval_split(vec![1, 2, 3], 0.01, 0).unwrap();
        assert_eq!((tr.len(), ev.len()), (2, 1));
        assert!(train_eval_split(vec![1], 1.0, 0).is_err());
    }

    #[test]
    fn batches_cover_every_index_once() {
        let b = batch_indices(10, 3, 1, false).unwrap();
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
        let mut all: Vec<usize> = b.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(batch_indices(10, 3, 1, true).unwrap().len(), 3);
        assert_ne!(
            batch_indices(10, 10, 1, false).unwrap(),
            batch_indices(10, 10, 2, false).unwrap()
        );
        assert!(batch_indices(3, 0, 0, false).is_err());
    }
}
