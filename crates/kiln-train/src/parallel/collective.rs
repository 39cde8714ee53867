//! [`CollectiveSync`]: [`GradSync`] on burn-collective 0.21, and [`data_parallel`], which runs a
//! training closure on `N` peers as threads of this process.

use std::sync::Arc;

use burn::collective::{
    CollectiveConfig, PeerId, ReduceOperation, all_reduce, finish_collective, register,
    reset_collective,
};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

use super::sync::GradSync;
use super::watchdog::Watchdog;
use crate::error::{Error, Result};
use crate::optim::TrainConfig;
use crate::train_loop::TrainLoop;

pub(crate) fn collective_error(e: impl std::fmt::Debug) -> Error {
    Error::Collective(format!("{e:?}"))
}

/// One peer of burn-collective's server (the server is keyed by the inner backend type). A peer
/// registered by [`Self::register`] leaves the collective when dropped; a peer of a
/// [`super::Cluster`] stays registered for the cluster's life and calls through its watchdog.
#[derive(Debug)]
pub struct CollectiveSync<B: AutodiffBackend> {
    peer: PeerId,
    rank: usize,
    world: usize,
    device: B::Device,
    owned: bool,
    guard: Option<Arc<Watchdog>>,
}

impl<B: AutodiffBackend> CollectiveSync<B> {
    /// Registers this thread as peer `rank` of `world` on `device` of this process; blocks until
    /// all `world` peers have registered.
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
            owned: true,
            guard: None,
        })
    }

    /// A peer already registered by a cluster: global `rank` of `world`, calls guarded by
    /// `guard`, not unregistered on drop.
    pub(crate) fn registered(
        rank: usize,
        world: usize,
        device: B::Device,
        guard: Arc<Watchdog>,
    ) -> Self {
        Self {
            peer: PeerId::from(rank),
            rank,
            world,
            device,
            owned: false,
            guard: Some(guard),
        }
    }

    fn call<T: Send + 'static>(
        &self,
        what: &str,
        op: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        match &self.guard {
            Some(guard) => guard.guarded(what, None, op),
            None => op(),
        }
    }

    fn all_reduce(
        &self,
        what: &str,
        t: Tensor<B::InnerBackend, 1>,
        op: ReduceOperation,
    ) -> Result<Tensor<B::InnerBackend, 1>> {
        let peer = self.peer;
        // burn-collective's ring all-reduce across nodes cuts the tensor into one slice per node:
        // pad short tensors (the loss sums) to at least one element per peer.
        let len = t.dims()[0];
        let t = if len < self.world {
            let pad = Tensor::zeros([self.world - len], &self.device);
            Tensor::cat(vec![t, pad], 0)
        } else {
            t
        };
        let t = t.into_primitive().tensor();
        let out = self.call(what, move || {
            all_reduce::<B::InnerBackend>(peer, t, op).map_err(collective_error)
        })?;
        let out = Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(out));
        Ok(if len < self.world {
            out.slice(0..len)
        } else {
            out
        })
    }
}

impl<B: AutodiffBackend> Drop for CollectiveSync<B> {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
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
        let out = self.all_reduce("sum", t, ReduceOperation::Sum)?;
        Ok(kiln_model::read_f32(out, "collective sum")?
            .into_iter()
            .map(f64::from)
            .collect())
    }

    fn mean(&self, flat: Tensor<B::InnerBackend, 1>) -> Result<Tensor<B::InnerBackend, 1>> {
        self.all_reduce("gradient mean", flat, ReduceOperation::Mean)
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
    run_peers(
        model,
        config,
        devices,
        |local, device| CollectiveSync::<B>::register(local, world, device),
        run,
    )
}

/// Runs `run` on one thread per device, each with a copy of `model` forked to its device and the
/// sync `sync(local index, device)` makes; returns the first local peer's model and every result.
pub(crate) fn run_peers<B, M, R, F, S>(
    model: M,
    config: &TrainConfig,
    devices: &[B::Device],
    sync: S,
    run: F,
) -> Result<(M, Vec<R>)>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    R: Send,
    F: Fn(&mut TrainLoop<B, M>) -> Result<R> + Sync,
    S: Fn(usize, B::Device) -> Result<CollectiveSync<B>> + Sync,
{
    let (run, sync) = (&run, &sync);
    let results: Vec<Result<(Option<M>, R)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = devices
            .iter()
            .enumerate()
            .map(|(local, device)| {
                let model = model.clone().fork(device);
                let config = config.clone();
                let device = device.clone();
                scope.spawn(move || -> Result<(Option<M>, R)> {
                    let peer = sync(local, device)?;
                    let mut train = TrainLoop::new(model, config)?.with_grad_sync(Arc::new(peer));
                    let out = run(&mut train)?;
                    let model = train.into_model()?;
                    Ok(((local == 0).then_some(model), out))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::PeerPanicked {
                        what: "training".into(),
                    })
                })
            })
            .collect()
    });
    let mut first = None;
    let mut outs = Vec::with_capacity(devices.len());
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

/// Data parallelism against one peer on the whole batch: the averaged gradients, and the weights
/// after a few steps, for DPO (plain, with accumulation and uneven shards, LoRA), the reward model
/// and SFT (token-weighted). One test function: the collective server is process-wide.
#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use burn::module::AutodiffModule;
    use burn::tensor::Tensor;
    use burn::tensor::backend::AutodiffBackend;
    use kiln_losses::DpoConfig;
    use kiln_model::LogProbReduction;
    use kiln_model::{LlamaForCausalLM, LlamaForSequenceClassification, LoraConfig, LoraTarget};

    use super::{CollectiveSync, data_parallel};
    use crate::dpo::{DpoTrainConfig, precompute_reference_logps, train_dpo};
    use crate::parallel::GradSync;
    use crate::reward::{RewardPair, RewardTrainConfig, train_reward_model};
    use crate::sft::{SftTrainConfig, train_sft};
    use crate::testutil::{TB, flat_params, max_rel_diff, tiny};
    use crate::{Result, TrainConfig, TrainLoop};

    type Inner = <TB as AutodiffBackend>::InnerBackend;

    /// A peer that records the averaged gradients of every step.
    struct Recording {
        inner: Box<dyn GradSync<TB>>,
        steps: Mutex<Vec<Vec<f32>>>,
    }

    impl GradSync<TB> for Recording {
        fn rank(&self) -> usize {
            self.inner.rank()
        }
        fn world(&self) -> usize {
            self.inner.world()
        }
        fn sum(&self, values: &[f64]) -> Result<Vec<f64>> {
            self.inner.sum(values)
        }
        fn mean(&self, flat: Tensor<Inner, 1>) -> Result<Tensor<Inner, 1>> {
            let flat = self.inner.mean(flat)?;
            self.steps
                .lock()
                .unwrap()
                .push(kiln_model::read_f32(flat.clone(), "grad").unwrap());
            Ok(flat)
        }
    }

    /// `world` peers (threads) train a copy of `model` with `run`; returns rank 0's averaged
    /// gradients per step and its final weights.
    fn peers<M, F>(
        world: usize,
        model: &M,
        config: &TrainConfig,
        run: F,
    ) -> (Vec<Vec<f32>>, Vec<f32>)
    where
        M: AutodiffModule<TB> + Sync + 'static,
        F: Fn(&mut TrainLoop<TB, M>) + Sync,
    {
        burn::collective::reset_collective::<Inner>();
        let out: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..world)
                .map(|rank| {
                    let (model, config, run) = (model.clone(), config.clone(), &run);
                    s.spawn(move || {
                        let inner = CollectiveSync::<TB>::register(rank, world, Default::default());
                        let rec = Arc::new(Recording {
                            inner: Box::new(inner.unwrap()),
                            steps: Mutex::new(Vec::new()),
                        });
                        let mut train = TrainLoop::new(model, config).unwrap();
                        train = train.with_grad_sync(rec.clone());
                        run(&mut train);
                        let weights = flat_params(train.model().unwrap());
                        drop(train);
                        let steps = std::mem::take(&mut *rec.steps.lock().unwrap());
                        (steps, weights)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        out.into_iter().next().unwrap()
    }

    fn compare(
        what: &str,
        one: &(Vec<Vec<f32>>, Vec<f32>),
        two: &(Vec<Vec<f32>>, Vec<f32>),
    ) -> f32 {
        assert_eq!(one.0.len(), two.0.len(), "{what}: steps");
        let mut worst = 0f32;
        for (a, b) in two.0.iter().zip(&one.0) {
            let e = max_rel_diff(a, b);
            assert!(
                e < 1e-5,
                "{what}: averaged gradients differ by {e} (relative)"
            );
            worst = worst.max(e);
        }
        // AdamW with epsilon 1e-3 (see `config`): the update is Lipschitz in the gradient, so weights
        // after 3 steps differ by at most lr * 3 steps * (relative gradient error) / epsilon-scaled
        // terms: far below 1e-4 of the largest weight.
        let w = max_rel_diff(&two.1, &one.1);
        assert!(
            w < 1e-4,
            "{what}: weights after the steps differ by {w} (relative)"
        );
        tracing::info!(
            what,
            gradients = worst,
            weights = w,
            "data parallel vs one peer (relative)"
        );
        worst
    }

    fn config(micro: usize, accum: usize) -> TrainConfig {
        TrainConfig::new(3)
            .with_lr(1e-3)
            .with_micro_batch_size(micro)
            .with_grad_accum_steps(accum)
            .with_epsilon(1e-3)
            .with_max_grad_norm(Some(1.0))
            .with_log_every(0)
    }

    #[test]
    fn two_peers_equal_one_peer_on_the_whole_batch() {
        let t = tiny();
        let device = Default::default();
        let policy = LlamaForCausalLM::<TB>::init_seeded(&t.config, 0.05, 41, &device);
        let pairs = t.dpo_pairs(0..12);
        let reference =
            precompute_reference_logps(&policy.valid(), &pairs, t.pad, 4, LogProbReduction::Sum)
                .unwrap();
        let dtc = DpoTrainConfig::new()
            .with_loss(DpoConfig::new().with_beta(0.5))
            .with_pad_id(Some(t.pad));
        let dpo = |train: &mut TrainLoop<TB, LlamaForCausalLM<TB>>| {
            train_dpo(train, (&pairs, &reference), &dtc).unwrap();
        };
        // Plain: micro-batches of 4 pairs, 2 per peer.
        let c = config(4, 1);
        compare(
            "DPO",
            &peers(1, &policy, &c, dpo),
            &peers(2, &policy, &c, dpo),
        );
        // Accumulation over 2 micro-batches of 3 pairs: shards of 2 and 1 (weighted 2/3 and 1/3).
        let c = config(3, 2);
        compare(
            "DPO, accumulation, uneven shards",
            &peers(1, &policy, &c, dpo),
            &peers(2, &policy, &c, dpo),
        );
        // Three peers on micro-batches of 2: one peer's shard is empty (weight 0) at every step.
        let c = config(2, 1);
        compare(
            "DPO, an empty shard",
            &peers(1, &policy, &c, dpo),
            &peers(3, &policy, &c, dpo),
        );
        // LoRA: only the adapters have gradients.
        let lora = LoraConfig::new(vec![LoraTarget::Q, LoraTarget::V]).with_rank(4);
        let adapted = policy.clone().with_lora(&lora, &device).unwrap();
        let c = config(4, 1);
        compare(
            "DPO, LoRA",
            &peers(1, &adapted, &c, dpo),
            &peers(2, &adapted, &c, dpo),
        );

        // The reward model.
        let rm = LlamaForSequenceClassification::<TB>::init_seeded(&t.config, 0.05, 42, &device);
        let rm_pairs: Vec<RewardPair> = pairs
            .iter()
            .map(|(c, r)| RewardPair {
                chosen: c.clone(),
                rejected: r.clone(),
                margin: None,
            })
            .collect();
        let rtc = RewardTrainConfig::new().with_pad_id(Some(t.pad));
        let reward = |train: &mut TrainLoop<TB, LlamaForSequenceClassification<TB>>| {
            train_reward_model(train, &rm_pairs, &rtc).unwrap();
        };
        compare(
            "reward model",
            &peers(1, &rm, &c, reward),
            &peers(2, &rm, &c, reward),
        );

        // SFT: the loss is a mean over counted tokens, so shards are weighted by their tokens.
        let data = t.sft(0..12);
        let sft = |train: &mut TrainLoop<TB, LlamaForCausalLM<TB>>| {
            train_sft(
                train,
                &data,
                &SftTrainConfig::new().with_pad_id(Some(t.pad)),
            )
            .unwrap();
        };
        compare(
            "SFT",
            &peers(1, &policy, &c, sft),
            &peers(2, &policy, &c, sft),
        );

        // The runner: two peers end with the same model as the recorded run.
        let (model, stats) = data_parallel(policy.clone(), &c, &[device, device], |train| {
            train_dpo(train, (&pairs, &reference), &dtc)
        })
        .unwrap();
        assert_eq!(stats.len(), 2);
        assert_eq!(stats[0].len(), 3);
        assert_eq!(
            stats[0][2].loss, stats[1][2].loss,
            "every peer reports the global loss"
        );
        let recorded = peers(2, &policy, &c, dpo).1;
        assert!(max_rel_diff(&flat_params(&model), &recorded) < 1e-6);
    }
}
