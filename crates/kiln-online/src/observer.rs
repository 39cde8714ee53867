//! [`Observer`]: how a caller watches the loop's long stages (progress bars, one-line notes);
//! the library itself never prints.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use kiln_train::{MetricsLog, Placement, StepStats, TrainConfig, TrainLoop};

use crate::error::Result;

/// A progress bar of one stage (generation responses, annotated prompts, optimiser steps).
pub trait ProgressBar: Send + Sync {
    /// `done` items finished.
    fn set(&self, _done: usize) {}
    /// One more item finished.
    fn inc(&self, _n: usize) {}
    /// A short status (tokens generated, the loss).
    fn message(&self, _message: String) {}
    /// The stage ended.
    fn finish(&self) {}
}

/// A bar that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBar;

impl ProgressBar for NoBar {}

/// Receives the loop's progress: a bar per long stage and one-line notes (selection statistics,
/// carried-over policies). Every method has a silent default; notes also go to `tracing`.
pub trait Observer: Send + Sync {
    /// A bar for a stage of `total` items labelled `label`.
    fn bar(&self, _label: &str, _total: usize) -> Arc<dyn ProgressBar> {
        Arc::new(NoBar)
    }

    /// A line worth showing a person.
    fn note(&self, _line: &str) {}
}

/// An observer that shows nothing (tests, batch jobs; `tracing` still logs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Observer for Silent {}

/// What a training stage shows and logs: a bar labelled `label` with the loss and the metric
/// `metric`, and every step in the metrics log `metrics`.
#[derive(Clone, Copy)]
pub struct Watch<'a> {
    /// The bar's label.
    pub label: &'a str,
    /// The trainer metric shown beside the loss (`nll`, `rewards/accuracies`, ...).
    pub metric: &'static str,
    /// The metrics log (JSON Lines, opened fresh).
    pub metrics: &'a Path,
    /// Where the bar goes.
    pub observer: &'a dyn Observer,
}

/// Trains `model` with `train` (a trainer call such as `|t| train_sft(t, &data, &cfg)`) in a
/// [`TrainLoop`] of `tc` on every peer of `placement`: one, or data-parallel over this process's
/// devices and the other processes of a cluster. Global rank 0 shows the bar and writes the
/// metrics log. Returns the trained model.
///
/// # Errors
/// The trainer's; the metrics log's; the collective's.
pub fn train_watched<B, M, F>(
    model: M,
    tc: TrainConfig,
    placement: &Placement<B>,
    watch: &Watch<'_>,
    train: F,
) -> Result<M>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    F: Fn(&mut TrainLoop<B, M>) -> kiln_train::Result<Vec<StepStats>> + Sync,
{
    let total = tc.total_steps;
    let run = |lp: &mut TrainLoop<B, M>| -> kiln_train::Result<()> {
        let monitor = match lp.rank().0 {
            0 => Some(Monitor::attach(lp, total, watch)?),
            _ => None,
        };
        train(lp)?;
        monitor.map_or(Ok(()), |m| m.finish())
    };
    Ok(placement.fit(model, tc, run)?.0)
}

/// A training stage's bar and metrics log.
pub struct Monitor {
    bar: Arc<dyn ProgressBar>,
    log: MetricsLog,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

impl Monitor {
    /// Registers on `train` a per-step callback that appends every step to `watch.metrics`
    /// (opened fresh: a killed stage restarts from step 0) and advances a bar of `total` steps.
    /// In a data-parallel run, attach it on rank 0 only.
    ///
    /// # Errors
    /// The log cannot be created.
    pub fn attach<B: AutodiffBackend, M: AutodiffModule<B>>(
        train: &mut TrainLoop<B, M>,
        total: usize,
        watch: &Watch<'_>,
    ) -> kiln_train::Result<Self> {
        let bar = watch.observer.bar(watch.label, total);
        let log = MetricsLog::open(watch.metrics, 0)?;
        let metric = watch.metric;
        let shown = Arc::clone(&bar);
        train.on_step(log.callback_then(move |s: &StepStats| {
            let m = s.metric(metric).unwrap_or(f64::NAN);
            shown.message(format!("loss {:.3} {metric} {m:.2}", s.loss));
            shown.inc(1);
            ControlFlow::Continue(())
        }));
        Ok(Monitor { bar, log })
    }

    /// Ends the bar and returns the metrics log's error if writing it failed (training stopped
    /// at that step, so the stage must fail rather than save its model).
    ///
    /// # Errors
    /// The metrics log could not be written.
    pub fn finish(&self) -> kiln_train::Result<()> {
        self.bar.finish();
        self.log.finish()
    }
}
