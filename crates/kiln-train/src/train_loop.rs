//! [`TrainLoop`]: the one optimiser loop every trainer uses.
//!
//! A trainer supplies a closure that computes a [`StepLoss`] for one micro-batch; the loop does
//! the rest: gradient accumulation over `grad_accum_steps` micro-batches (each loss divided by
//! their number, so `k` micro-batches of a mean loss equal one `k`-times-larger batch), global-norm
//! clipping, the warmup + cosine learning rate, the AdamW update, the NaN/inf check and `tracing`
//! metrics every `log_every` steps.
//!
//! [`TrainLoop::on_step`] registers a per-step callback that [`TrainLoop::fit`] (and so every
//! trainer) calls after each optimiser step: progress bars, logging (a
//! [`MetricsLog`](crate::MetricsLog) writes every step to JSON Lines), early stopping
//! (`ControlFlow::Break`) without calling the trainers in slices.

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};
use std::ops::ControlFlow;

use std::sync::Arc;

use crate::clip::{clip_grad_norm, global_grad_norm};
use crate::error::{Error, Result};
use crate::optim::TrainConfig;
use crate::order::DataOrder;
use crate::parallel::{GradSync, flat, shard};
use crate::schedule::LrSchedule;

/// What a trainer's loss closure returns for one micro-batch.
#[derive(Debug, Clone)]
pub struct StepLoss<B: AutodiffBackend> {
    /// The scalar loss (`[1]`) to back-propagate: a mean over the micro-batch.
    pub loss: Tensor<B, 1>,
    /// Named metrics of this micro-batch (averaged over the micro-batches of a step).
    pub metrics: Vec<(String, f64)>,
    /// What the loss averages over (examples, or counted tokens), default 1: in a data-parallel
    /// step each peer's loss is weighted by its share of the micro-batch's total weight, so the
    /// averaged gradient equals the whole micro-batch's.
    pub weight: f64,
}

impl<B: AutodiffBackend> StepLoss<B> {
    /// A loss without extra metrics.
    pub fn new(loss: Tensor<B, 1>) -> Self {
        Self {
            loss,
            metrics: Vec::new(),
            weight: 1.0,
        }
    }

    /// Sets the weight (the number of examples or tokens the loss is a mean over).
    pub fn with_weight(mut self, weight: f64) -> Self {
        self.weight = weight;
        self
    }

    /// Adds a named metric.
    pub fn with_metric(mut self, name: impl Into<String>, value: f64) -> Self {
        self.metrics.push((name.into(), value));
        self
    }
}

/// Statistics of one optimiser step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    /// 1-based number of this optimiser step.
    pub step: usize,
    /// Learning rate used for the update.
    pub lr: f64,
    /// Mean loss over the step's micro-batches.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Named metrics averaged over the step's micro-batches.
    pub metrics: Vec<(String, f64)>,
}

impl StepStats {
    /// The value of a named metric, if the trainer reported it.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

/// A per-step callback: sees every step's statistics; `ControlFlow::Break(())` stops
/// [`TrainLoop::fit`] after that step.
pub type StepCallback = Box<dyn FnMut(&StepStats) -> ControlFlow<()>>;

/// The shared optimiser loop: model, AdamW state, schedule and step counter.
pub struct TrainLoop<B: AutodiffBackend, M: AutodiffModule<B>> {
    config: TrainConfig,
    schedule: LrSchedule,
    pub(crate) optim: OptimizerAdaptor<AdamW, M, B>,
    model: Option<M>,
    step: usize,
    on_step: Option<StepCallback>,
    stopped: bool,
    sync: Option<Arc<dyn GradSync<B>>>,
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> std::fmt::Debug for TrainLoop<B, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainLoop")
            .field("config", &self.config)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> TrainLoop<B, M> {
    /// A fresh loop (step 0, empty AdamW state) around `model`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the config is out of range.
    pub fn new(model: M, config: TrainConfig) -> Result<Self> {
        let schedule = config.schedule()?;
        Ok(Self {
            optim: config.adamw::<B, M>(),
            config,
            schedule,
            model: Some(model),
            step: 0,
            on_step: None,
            stopped: false,
            sync: None,
        })
    }

    /// The same loop as one peer of a data-parallel run: [`Self::fit`] trains on this peer's
    /// shard of every micro-batch and every step averages the gradients across the peers through
    /// `sync` (see [`crate::parallel`]).
    pub fn with_grad_sync(mut self, sync: Arc<dyn GradSync<B>>) -> Self {
        self.sync = Some(sync);
        self
    }

    /// `(rank, peers)`: `(0, 1)` without data parallelism.
    pub fn rank(&self) -> (usize, usize) {
        self.sync.as_ref().map_or((0, 1), |s| (s.rank(), s.world()))
    }

    /// Registers `callback`, called by [`Self::fit`] after every optimiser step with its
    /// statistics (replacing any earlier one). Returning `ControlFlow::Break(())` stops training
    /// early: `fit` returns after that step and [`Self::stopped_early`] becomes true.
    ///
    /// ```
    /// # use burn::backend::{Autodiff, Flex};
    /// # use burn::nn::{Linear, LinearConfig};
    /// # use kiln_train::{TrainConfig, TrainLoop};
    /// # use std::ops::ControlFlow;
    /// # let model: Linear<Autodiff<Flex>> = LinearConfig::new(2, 1).init(&Default::default());
    /// let mut train = TrainLoop::new(model, TrainConfig::new(100))?;
    /// train.on_step(|s| {
    ///     eprintln!("step {} loss {:.4}", s.step, s.loss);
    ///     if s.loss < 1e-3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    /// });
    /// # Ok::<(), kiln_train::Error>(())
    /// ```
    pub fn on_step(&mut self, callback: impl FnMut(&StepStats) -> ControlFlow<()> + 'static) {
        self.on_step = Some(Box::new(callback));
        self.stopped = false;
    }

    /// Removes the per-step callback.
    pub fn clear_on_step(&mut self) {
        self.on_step = None;
    }

    /// Whether the per-step callback stopped training before `total_steps`.
    pub fn stopped_early(&self) -> bool {
        self.stopped
    }

    pub(crate) fn set_step(&mut self, step: usize) {
        self.step = step;
    }

    /// The model being trained.
    ///
    /// # Errors
    /// [`Error::ModelLost`] after an optimiser step panicked midway (the only way the loop can
    /// lose its model, which the update consumes and returns).
    pub fn model(&self) -> Result<&M> {
        self.model.as_ref().ok_or(Error::ModelLost)
    }

    /// Consumes the loop and returns the model.
    ///
    /// # Errors
    /// [`Error::ModelLost`], as for [`Self::model`].
    pub fn into_model(mut self) -> Result<M> {
        self.model.take().ok_or(Error::ModelLost)
    }

    /// The AdamW optimiser; its record holds state only for parameters that received gradients
    /// (e.g. only the LoRA adapters of a model with frozen base weights).
    pub fn optimizer(&self) -> &OptimizerAdaptor<AdamW, M, B> {
        &self.optim
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The learning-rate schedule.
    pub fn schedule(&self) -> &LrSchedule {
        &self.schedule
    }

    /// Number of optimiser steps taken so far.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Whether `total_steps` have been taken.
    pub fn is_done(&self) -> bool {
        self.step >= self.config.total_steps
    }

    /// The learning rate of the next update.
    pub fn next_lr(&self) -> f64 {
        self.schedule.lr(self.step)
    }

    /// One optimiser step over `micro_batches` (normally `grad_accum_steps` of them): for each,
    /// `loss_fn(model, batch)`, a check that the loss is finite, and `backward()` of
    /// `loss / micro_batches.len()`; then global-norm clipping and the AdamW update.
    ///
    /// # Errors
    /// [`Error::NonFiniteLoss`] / [`Error::NonFiniteGradient`] naming the step (the model is left
    /// as it was before the step), [`Error::InvalidInput`] for no micro-batch, or any error of
    /// `loss_fn`.
    pub fn train_step<T, F>(&mut self, micro_batches: &[T], mut loss_fn: F) -> Result<StepStats>
    where
        F: FnMut(&M, &T) -> Result<StepLoss<B>>,
    {
        if micro_batches.is_empty() {
            return Err(Error::InvalidInput(
                "an optimiser step needs at least one micro-batch".into(),
            ));
        }
        let step = self.step + 1;
        let k = micro_batches.len();
        let model = self.model()?;
        let mut acc = GradientsAccumulator::<M>::new();
        let mut loss_sum = 0.0;
        let mut metrics: Vec<(String, f64)> = Vec::new();
        for (j, batch) in micro_batches.iter().enumerate() {
            let out = loss_fn(model, batch)?;
            let local = out.loss.clone().into_scalar().elem::<f64>();
            // Data parallel: the micro-batch's loss over all peers, and this peer's share of its
            // weight (a NaN on any peer reaches every peer, so all stop at the same step).
            let (value, share) = match &self.sync {
                None => (local, None),
                Some(sync) => {
                    let sums = sync.sum(&[out.weight, out.weight * local])?;
                    let share = sync.world() as f64 * out.weight / sums[0];
                    (sums[1] / sums[0], Some(share / k as f64))
                }
            };
            if !value.is_finite() {
                return Err(Error::NonFiniteLoss {
                    step,
                    micro_batch: j,
                    value,
                });
            }
            loss_sum += value;
            for (name, v) in out.metrics {
                match metrics.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, sum)) => *sum += v,
                    None => metrics.push((name, v)),
                }
            }
            let loss = match share {
                Some(scale) => out.loss.mul_scalar(scale),
                None if k > 1 => out.loss.div_scalar(k as f64),
                None => out.loss,
            };
            let grads = GradientsParams::from_grads(loss.backward(), model);
            acc.accumulate(model, grads);
        }
        let mut grads = acc.grads();
        if let Some(sync) = &self.sync {
            grads = flat::mean_grads(sync.as_ref(), model, grads)?;
        }
        let grad_norm = match self.config.max_grad_norm {
            Some(max) => clip_grad_norm::<B, M>(model, &mut grads, max),
            None => global_grad_norm::<B, M>(model, &grads),
        };
        if !grad_norm.is_finite() {
            return Err(Error::NonFiniteGradient {
                step,
                value: grad_norm,
            });
        }
        let lr = self.schedule.lr(self.step);
        let model = self.model.take().ok_or(Error::ModelLost)?;
        self.model = Some(self.optim.step(lr, model, grads));
        self.step = step;
        for (_, v) in metrics.iter_mut() {
            *v /= k as f64;
        }
        let stats = StepStats {
            step,
            lr,
            loss: loss_sum / k as f64,
            grad_norm,
            metrics,
        };
        if self.config.log_every > 0 && step.is_multiple_of(self.config.log_every) {
            let extra = stats
                .metrics
                .iter()
                .map(|(n, v)| format!("{n}={v:.6}"))
                .collect::<Vec<_>>()
                .join(" ");
            tracing::info!(
                step,
                total = self.config.total_steps,
                lr = stats.lr,
                loss = stats.loss,
                grad_norm = stats.grad_norm,
                metrics = %extra,
                "train step"
            );
        }
        Ok(stats)
    }

    /// Runs optimiser steps until `until_step` (capped at `total_steps`) over a dataset of
    /// `dataset_len` examples in the seeded [`DataOrder`]: step `s` uses global micro-batches
    /// `s * k .. (s + 1) * k` (`k = grad_accum_steps`). `collate` turns example indices into a
    /// micro-batch; `loss_fn` is as in [`Self::train_step`]. The [`Self::on_step`] callback runs
    /// after every step; once it breaks, `fit` returns (later calls take no step until a new
    /// callback is registered). Resuming from a checkpoint and calling
    /// `fit` again continues with exactly the batches an uninterrupted run would have used.
    ///
    /// # Errors
    /// Those of [`Self::train_step`] and `collate`; [`Error::InvalidInput`] for an empty dataset.
    pub fn fit<T, C, F>(
        &mut self,
        dataset_len: usize,
        until_step: usize,
        mut collate: C,
        mut loss_fn: F,
    ) -> Result<Vec<StepStats>>
    where
        C: FnMut(&[usize]) -> Result<T>,
        F: FnMut(&M, &T) -> Result<StepLoss<B>>,
    {
        let mut order =
            DataOrder::new(dataset_len, self.config.micro_batch_size, self.config.seed)?;
        let until = until_step.min(self.config.total_steps);
        let k = self.config.grad_accum_steps;
        let mut all = Vec::new();
        let (rank, world) = self.rank();
        while self.step < until && !self.stopped {
            // Each peer takes its shard; an empty shard runs the last example with weight 0.
            let batches = (0..k)
                .map(|j| {
                    let idx = order.micro_batch(self.step * k + j)?;
                    let part = shard(idx.len(), rank, world);
                    let empty = part.is_empty();
                    let rows = if empty {
                        &idx[idx.len() - 1..]
                    } else {
                        &idx[part]
                    };
                    Ok((collate(rows)?, empty))
                })
                .collect::<Result<Vec<(T, bool)>>>()?;
            let stats = self.train_step(&batches, |model, (batch, empty)| {
                let out = loss_fn(model, batch)?;
                Ok(if *empty { out.with_weight(0.0) } else { out })
            })?;
            if let Some(callback) = self.on_step.as_mut()
                && callback(&stats).is_break()
            {
                self.stopped = true;
            }
            all.push(stats);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;
    // Constant weights: what the tests assert must not depend on a random draw.
    use burn::nn::{Initializer, Linear, LinearConfig};
    use burn::tensor::TensorData;

    type B = Autodiff<Flex>;

    fn data() -> Vec<([f32; 4], [f32; 3])> {
        (0..8)
            .map(|i| {
                let x = [
                    i as f32 * 0.3 - 1.0,
                    (i * i) as f32 * 0.05,
                    1.0,
                    (i % 3) as f32,
                ];
                let y = [x[0] * 2.0 - x[1], x[3] + 0.5, -x[0]];
                (x, y)
            })
            .collect()
    }

    fn mse(model: &Linear<B>, batch: &[([f32; 4], [f32; 3])]) -> Result<StepLoss<B>> {
        let device = Default::default();
        let n = batch.len();
        let xs: Vec<f32> = batch.iter().flat_map(|b| b.0).collect();
        let ys: Vec<f32> = batch.iter().flat_map(|b| b.1).collect();
        let x = Tensor::<B, 2>::from_data(TensorData::new(xs, [n, 4]), &device);
        let y = Tensor::<B, 2>::from_data(TensorData::new(ys, [n, 3]), &device);
        let loss = (model.forward(x) - y).square().mean();
        Ok(StepLoss::new(loss).with_metric("n", batch.len() as f64))
    }

    /// A Linear with its (lazy) parameters materialised, so clones share the same values.
    fn linear(device: &burn::backend::flex::FlexDevice) -> Linear<B> {
        let model: Linear<B> = LinearConfig::new(4, 3)
            .with_initializer(Initializer::Constant { value: 0.1 })
            .init(device);
        let _ = model.weight.val();
        let _ = model.bias.as_ref().map(|b| b.val());
        model
    }

    fn weights(model: &Linear<B>) -> Vec<f32> {
        let mut w = model.weight.val().into_data().to_vec::<f32>().unwrap();
        w.extend(
            model
                .bias
                .as_ref()
                .unwrap()
                .val()
                .into_data()
                .to_vec::<f32>()
                .unwrap(),
        );
        w
    }

    #[test]
    fn accumulating_k_micro_batches_equals_one_k_times_larger_batch() {
        let device = Default::default();
        let model = linear(&device);
        // Small max_grad_norm so clipping is active and must act on the accumulated gradient.
        let config = TrainConfig::new(10)
            .with_lr(0.05)
            .with_warmup_steps(1)
            .with_max_grad_norm(Some(0.5))
            .with_weight_decay(0.01);
        let mut small =
            TrainLoop::new(model.clone(), config.clone().with_grad_accum_steps(4)).unwrap();
        let mut big = TrainLoop::new(model, config).unwrap();
        let d = data();
        for _ in 0..4 {
            let micro: Vec<Vec<_>> = d.chunks(2).map(<[_]>::to_vec).collect();
            let a = small.train_step(&micro, |m, b| mse(m, b)).unwrap();
            let b = big
                .train_step(std::slice::from_ref(&d), |m, b| mse(m, b))
                .unwrap();
            assert!((a.loss - b.loss).abs() < 1e-5, "{} vs {}", a.loss, b.loss);
            assert!((a.grad_norm - b.grad_norm).abs() < 1e-4 * b.grad_norm.max(1.0));
            assert_eq!(a.metric("n"), Some(2.0));
        }
        let (wa, wb) = (
            weights(small.model().unwrap()),
            weights(big.model().unwrap()),
        );
        let max_diff = wa
            .iter()
            .zip(&wb)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(max_diff < 1e-5, "max weight difference {max_diff}");
        assert_eq!(small.step(), 4);
    }

    #[test]
    fn fit_lowers_the_loss_and_follows_the_schedule() {
        let device = Default::default();
        let model: Linear<B> = LinearConfig::new(4, 3)
            .with_initializer(Initializer::Constant { value: 0.1 })
            .init(&device);
        let config = TrainConfig::new(30)
            .with_lr(0.05)
            .with_warmup_steps(3)
            .with_micro_batch_size(4)
            .with_grad_accum_steps(2)
            .with_log_every(5);
        let mut train = TrainLoop::new(model, config).unwrap();
        let d = data();
        let stats = train
            .fit(
                d.len(),
                100,
                |idx| Ok(idx.iter().map(|&i| d[i]).collect::<Vec<_>>()),
                |m, b| mse(m, b),
            )
            .unwrap();
        assert_eq!(stats.len(), 30, "capped at total_steps");
        assert!(train.is_done());
        assert_eq!(stats[0].lr, 0.0);
        assert!((stats[3].lr - 0.05).abs() < 1e-12);
        assert!(
            stats[29].loss < 0.5 * stats[0].loss,
            "{:?}",
            (stats[0].loss, stats[29].loss)
        );
    }

    #[test]
    fn the_step_callback_sees_every_step_and_can_stop_early() {
        let device = Default::default();
        let model: Linear<B> = LinearConfig::new(4, 3)
            .with_initializer(Initializer::Constant { value: 0.1 })
            .init(&device);
        let config = TrainConfig::new(20).with_lr(0.05).with_micro_batch_size(4);
        let mut train = TrainLoop::new(model, config).unwrap();
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let log = seen.clone();
        train.on_step(move |s| {
            log.borrow_mut().push(s.step);
            if s.step == 7 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        let d = data();
        let collate = |idx: &[usize]| Ok(idx.iter().map(|&i| d[i]).collect::<Vec<_>>());
        let stats = train.fit(d.len(), 20, collate, |m, b| mse(m, b)).unwrap();
        assert_eq!(stats.len(), 7);
        assert_eq!(*seen.borrow(), (1..=7).collect::<Vec<_>>());
        assert!(train.stopped_early() && !train.is_done());
        let again = train.fit(d.len(), 20, collate, |m, b| mse(m, b)).unwrap();
        assert!(again.is_empty(), "a stopped loop takes no further step");
        train.clear_on_step();
        train.on_step(|_| ControlFlow::Continue(()));
        let rest = train.fit(d.len(), 20, collate, |m, b| mse(m, b)).unwrap();
        assert_eq!(rest.len(), 13);
        assert!(train.is_done());
    }

    #[test]
    fn non_finite_loss_stops_with_an_error_naming_the_step() {
        let device = Default::default();
        let model: Linear<B> = LinearConfig::new(4, 3)
            .with_initializer(Initializer::Constant { value: 0.1 })
            .init(&device);
        let mut train = TrainLoop::new(model, TrainConfig::new(10).with_lr(0.01)).unwrap();
        let d = data();
        train
            .train_step(std::slice::from_ref(&d), |m, b| mse(m, b))
            .unwrap();
        let before = weights(train.model().unwrap());
        for bad in [f32::NAN, f32::INFINITY] {
            let err = train
                .train_step(&[d.clone(), d.clone()], |m, b| {
                    let out = mse(m, b)?;
                    Ok(StepLoss::new(out.loss * bad))
                })
                .unwrap_err();
            match &err {
                Error::NonFiniteLoss {
                    step, micro_batch, ..
                } => assert_eq!((*step, *micro_batch), (2, 0)),
                other => panic!("unexpected error {other}"),
            }
            assert!(err.to_string().contains("step 2"), "{err}");
        }
        assert_eq!(
            weights(train.model().unwrap()),
            before,
            "a failed step leaves the model unchanged"
        );
        assert_eq!(train.step(), 1);
        assert!(
            train
                .train_step::<Vec<([f32; 4], [f32; 3])>, _>(&[], |m, b| mse(m, b))
                .is_err()
        );
        let _ = Module::<B>::num_params(train.model().unwrap());
    }
}
