//! Seeded data order: which examples form global micro-batch `g`.
//!
//! Epoch `e` is a permutation of `0..n` drawn from `seed + e` (via `kiln_data::split`), cut into
//! micro-batches (the last one shorter when `n` is not a multiple). Global micro-batch `g` is
//! batch `g % per_epoch` of epoch `g / per_epoch`, so the order is a pure function of the seed and
//! the step: a resumed run sees exactly the batches an uninterrupted run would.

use crate::error::{Error, Result};

/// The seeded micro-batch plan over a dataset of `n` examples.
#[derive(Debug, Clone)]
pub struct DataOrder {
    n: usize,
    batch_size: usize,
    seed: u64,
    cached: Option<(usize, Vec<Vec<usize>>)>,
}

impl DataOrder {
    /// A plan over `n` examples in micro-batches of `batch_size`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty dataset, [`Error::InvalidConfig`] for `batch_size == 0`.
    pub fn new(n: usize, batch_size: usize, seed: u64) -> Result<Self> {
        if n == 0 {
            return Err(Error::InvalidInput(
                "cannot train on an empty dataset".into(),
            ));
        }
        if batch_size == 0 {
            return Err(Error::InvalidConfig("micro_batch_size must be > 0".into()));
        }
        Ok(Self {
            n,
            batch_size,
            seed,
            cached: None,
        })
    }

    /// Micro-batches per epoch (`ceil(n / batch_size)`).
    pub fn batches_per_epoch(&self) -> usize {
        self.n.div_ceil(self.batch_size)
    }

    /// The epoch global micro-batch `g` belongs to.
    pub fn epoch_of(&self, g: usize) -> usize {
        g / self.batches_per_epoch()
    }

    /// Example indices of global micro-batch `g`.
    pub fn micro_batch(&mut self, g: usize) -> Result<Vec<usize>> {
        let per_epoch = self.batches_per_epoch();
        let epoch = g / per_epoch;
        if self.cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let plan = kiln_data::split::batch_indices(
                self.n,
                self.batch_size,
                self.seed.wrapping_add(epoch as u64),
                false,
            )?;
            self.cached = Some((epoch, plan));
        }
        let plan = &self
            .cached
            .as_ref()
            .map(|(_, p)| p)
            .ok_or_else(|| Error::InvalidInput("data order cache is empty".into()))?;
        Ok(plan[g % per_epoch].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_permutations_and_seeded() {
        let mut a = DataOrder::new(10, 3, 7).unwrap();
        let mut b = DataOrder::new(10, 3, 7).unwrap();
        assert_eq!(a.batches_per_epoch(), 4);
        for epoch in 0..3 {
            let mut seen: Vec<usize> = (0..4)
                .flat_map(|j| a.micro_batch(epoch * 4 + j).unwrap())
                .collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..10).collect::<Vec<_>>());
        }
        assert_eq!(a.micro_batch(5).unwrap(), b.micro_batch(5).unwrap());
        // Random access gives the same batch as sequential access.
        let seq: Vec<_> = (0..8).map(|g| a.micro_batch(g).unwrap()).collect();
        assert_eq!(b.micro_batch(6).unwrap(), seq[6]);
        assert_ne!(seq[0..4], seq[4..8], "a new order every epoch");
        assert!(DataOrder::new(0, 3, 7).is_err());
    }
}
