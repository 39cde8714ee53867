//! [`Placement`]: where training runs: this process's devices, and the cluster of processes it
//! belongs to, if any.

use std::ops::Range;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;

use super::cluster::Cluster;
use super::collective::data_parallel;
use super::shard::{block_shards, on_threads};
use super::team::{Team, gather};
use crate::error::{Error, Result};
use crate::optim::TrainConfig;
use crate::train_loop::TrainLoop;

/// This process's devices (one peer each) and its [`Cluster`], if it is one rank of several.
#[derive(Debug)]
pub struct Placement<B: AutodiffBackend> {
    devices: Vec<B::Device>,
    cluster: Option<Arc<Cluster<B>>>,
}

impl<B: AutodiffBackend> Clone for Placement<B> {
    fn clone(&self) -> Self {
        Self {
            devices: self.devices.clone(),
            cluster: self.cluster.clone(),
        }
    }
}

impl<B: AutodiffBackend> Placement<B> {
    /// Peers on `devices` of this process (one peer when the list holds one device; on a CPU,
    /// repeat its device to run several peers on its cores). An empty list means the default
    /// device.
    pub fn devices(devices: Vec<B::Device>) -> Self {
        let devices = if devices.is_empty() {
            vec![B::Device::default()]
        } else {
            devices
        };
        Self {
            devices,
            cluster: None,
        }
    }

    /// The peers of a multi-process run, this process's on the cluster's devices.
    pub fn cluster(cluster: Arc<Cluster<B>>) -> Self {
        Self {
            devices: cluster.devices().to_vec(),
            cluster: Some(cluster),
        }
    }

    /// This process's devices.
    pub fn local_devices(&self) -> &[B::Device] {
        &self.devices
    }

    /// Peers over every process.
    pub fn peers(&self) -> usize {
        self.cluster
            .as_ref()
            .map_or(self.devices.len(), |c| c.peers())
    }

    /// The processes of the run, when there are several.
    pub fn team(&self) -> Option<Arc<dyn Team>> {
        self.cluster
            .as_ref()
            .map(|c| Arc::clone(c) as Arc<dyn Team>)
    }

    /// Trains `model` with `run` in a [`TrainLoop`] of `config` on every peer (data-parallel
    /// when there are several: [`super::data_parallel`] or [`Cluster::data_parallel`]).
    /// Returns the trained model and every local peer's result.
    ///
    /// # Errors
    /// The trainer's and the collective's.
    pub fn fit<M, R, F>(&self, model: M, config: TrainConfig, run: F) -> Result<(M, Vec<R>)>
    where
        M: AutodiffModule<B>,
        R: Send,
        F: Fn(&mut TrainLoop<B, M>) -> Result<R> + Sync,
    {
        if let Some(cluster) = &self.cluster {
            return cluster.data_parallel(model, &config, run);
        }
        if self.devices.len() > 1 {
            return data_parallel(model, &config, &self.devices, run);
        }
        let mut train = TrainLoop::new(model, config)?;
        let out = run(&mut train)?;
        Ok((train.into_model()?, vec![out]))
    }

    /// Maps `work` over `0..len` on every peer of the run, in whole `block`s: this process takes
    /// its contiguous run of blocks ([`block_shards`] over the processes), its local peers
    /// (threads) each take a contiguous run of those, and every process gets every part back in
    /// order (gathered through the shared directory under `name`). Each block is computed as one
    /// batch whatever the number of peers, so the result is the same bits as one peer's. Every
    /// rank must call it (it meets the others in the gather).
    ///
    /// # Errors
    /// `work`'s first error in order; [`Error::PeerPanicked`]; the gather's.
    pub fn map_blocks<T, E>(
        &self,
        name: &str,
        len: usize,
        block: usize,
        work: impl Fn(Range<usize>) -> std::result::Result<Vec<T>, E> + Sync,
    ) -> std::result::Result<Vec<T>, E>
    where
        T: Send + Serialize + DeserializeOwned,
        E: Send + From<Error>,
    {
        let team = self.team();
        let mine = match &team {
            Some(t) => block_shards(len, block, t.world())
                .swap_remove(t.rank().min(t.world().saturating_sub(1))),
            None => 0..len,
        };
        let part = self.map_local_range(name, mine, block, work)?;
        match &team {
            Some(t) => Ok(gather(t.as_ref(), name, &part)?),
            None => Ok(part),
        }
    }

    /// As [`Self::map_blocks`] on this process's peers only (no other process takes part: work
    /// that one rank does alone, such as an evaluation).
    ///
    /// # Errors
    /// `work`'s first error in order; [`Error::PeerPanicked`].
    pub fn map_local_blocks<T, E>(
        &self,
        name: &str,
        len: usize,
        block: usize,
        work: impl Fn(Range<usize>) -> std::result::Result<Vec<T>, E> + Sync,
    ) -> std::result::Result<Vec<T>, E>
    where
        T: Send,
        E: Send + From<Error>,
    {
        self.map_local_range(name, 0..len, block, work)
    }

    fn map_local_range<T, E>(
        &self,
        name: &str,
        range: Range<usize>,
        block: usize,
        work: impl Fn(Range<usize>) -> std::result::Result<Vec<T>, E> + Sync,
    ) -> std::result::Result<Vec<T>, E>
    where
        T: Send,
        E: Send + From<Error>,
    {
        let offset = range.start;
        let local: Vec<Range<usize>> = block_shards(range.len(), block, self.devices.len())
            .into_iter()
            .map(|r| r.start + offset..r.end + offset)
            .collect();
        on_threads(name, &local, work)
    }
}
