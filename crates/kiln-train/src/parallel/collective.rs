//! [`CollectiveSync`]: [`GradSync`] on burn-collective 0.21, and [`data_parallel`], which runs a
//! training closure on `N` peers as threads of this process.

use std::sync::Arc;

use burn::collective::{
    CollectiveConfig, PeerId, ReduceOperation, all_reduce, finish_collective, register,
    reset_collective,
};
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

use super::sync::GradSync;
use crate::error::{Error, Result};
use crate::optim::TrainConfig;
use crate::train_loop::TrainLoop;

fn collective_error(e: impl std::fmt::Debug) -> Error {
    Error::Collective(format!("{e:?}"))
}

/// One peer of burn-collective's local server (peers are threads of this process; the server is
/// keyed by the inner backend type). Dropping it leaves the collective.
#[derive(Debug)]
pub struct CollectiveSync<B: AutodiffBackend> {
    peer: PeerId,
    rank: usize,
    world: usize,
    device: B::Device,
}

impl<B: AutodiffBackend> CollectiveSync<B> {
    /// Registers this thread as peer `rank` of `world` on `device`; blocks until all `world`
    /// peers have registered.
    ///
    /// # Errors
    /// [`Error::Collective`] when the server refuses the peer.
    pub fn register(rank: usize, world: usize, device: B::Device) -> Result<Self> {
        let peer = PeerId::from(rank);
        let config = CollectiveConfig::default().with_num_devices(world);
        register::<B::InnerBackend>(peer, device.clone(), config).map_err(collective_error)?;
        Ok(Self {
            peer,
            rank,
            world,
            device,
        })
    }
}

impl<B: AutodiffBackend> Drop for CollectiveSync<B> {
    fn drop(&mut self) {
        if let Err(e) = finish_collective::<B::InnerBackend>(self.peer) {
            tracing::warn!(rank = self.rank, error = ?e, "leaving the collective failed");
        }
    }
}

impl<B: AutodiffBackend> GradSync<B> for CollectiveSync<B> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    fn sum(&self, values: &[f64]) -> Result<Vec<f64>> {
        let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let t = Tensor::<B::InnerBackend, 1>::from_data(
            TensorData::new(data, [values.len()]),
            &self.device,
        );
        let out = all_reduce::<B::InnerBackend>(
            self.peer,
            t.into_primitive().tensor(),
            ReduceOperation::Sum,
        )
        .map_err(collective_error)?;
        let out = Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(out));
        Ok(kiln_model::read_f32(out, "collective sum")?
            .into_iter()
            .map(f64::from)
            .collect())
    }

    fn mean_grads(&self, grads: GradientsParams) -> Result<GradientsParams> {
        grads
            .all_reduce::<B::InnerBackend>(self.peer, ReduceOperation::Mean)
            .map_err(collective_error)
    }
}

/// Runs `run` on `devices.len()` peers, each a thread with its own copy of `model` (one
/// initialised module, so every peer has the same parameter ids) in a [`TrainLoop`] of `config`
/// whose gradients are averaged across the peers ([`CollectiveSync`]). Every trainer works
/// unchanged inside `run` (it calls [`TrainLoop::fit`]); each peer trains on its shard of every
/// micro-batch, and all peers end with the same weights. Returns rank 0's trained model and
/// every peer's result, in rank order.
///
/// The local collective server is process-wide: one data-parallel run at a time.
///
/// # Errors
/// The first peer's error in rank order; [`Error::Collective`] when a peer panicked.
pub fn data_parallel<B, M, R, F>(
    model: M,
    config: &TrainConfig,
    devices: &[B::Device],
    run: F,
) -> Result<(M, Vec<R>)>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    R: Send,
    F: Fn(&mut TrainLoop<B, M>) -> Result<R> + Sync,
{
    let world = devices.len();
    if world == 0 {
        return Err(Error::InvalidConfig(
            "data parallelism needs at least one device".into(),
        ));
    }
    reset_collective::<B::InnerBackend>();
    let run = &run;
    let results: Vec<Result<(Option<M>, R)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = devices
            .iter()
            .enumerate()
            .map(|(rank, device)| {
                let model = model.clone().fork(device);
                let config = config.clone();
                let device = device.clone();
                scope.spawn(move || -> Result<(Option<M>, R)> {
                    let sync = CollectiveSync::<B>::register(rank, world, device)?;
                    let mut train = TrainLoop::new(model, config)?.with_grad_sync(Arc::new(sync));
                    let out = run(&mut train)?;
                    let model = train.into_model()?;
                    Ok(((rank == 0).then_some(model), out))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Collective("a peer panicked".into())))
            })
            .collect()
    });
    let mut first = None;
    let mut outs = Vec::with_capacity(world);
    for r in results {
        let (model, out) = r?;
        if first.is_none() {
            first = model;
        }
        outs.push(out);
    }
    let model = first.ok_or(Error::ModelLost)?;
    Ok((model, outs))
}
