//! [`Observer`]: how a caller watches the loop's long stages (progress bars, one-line notes);
//! the library itself never prints.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use kiln_train::{MetricsLog, StepStats, TrainConfig, TrainLoop};

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

/// A training loop over `model` whose per-step callback appends every step to the metrics log
/// `metrics` (opened fresh: a killed stage restarts from step 0) and advances a bar labelled
/// `label` showing the loss and the metric `metric`. Call [`Monitor::finish`] after training,
/// before saving.
///
/// # Errors
/// The log cannot be created; an invalid training config.
pub fn monitored<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: M,
    tc: TrainConfig,
    label: &str,
    metric: &'static str,
    metrics: &Path,
    observer: &dyn Observer,
) -> Result<(TrainLoop<B, M>, Monitor)> {
    let bar = observer.bar(label, tc.total_steps);
    let log = MetricsLog::open(metrics, 0)?;
    let mut train = TrainLoop::new(model, tc)?;
    let shown = Arc::clone(&bar);
    train.on_step(log.callback_then(move |s: &StepStats| {
        let m = s.metric(metric).unwrap_or(f64::NAN);
        shown.message(format!("loss {:.3} {metric} {m:.2}", s.loss));
        shown.inc(1);
        ControlFlow::Continue(())
    }));
    Ok((train, Monitor { bar, log }))
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
    /// Ends the bar and returns the metrics log's error if writing it failed (training stopped
    /// at that step, so the stage must fail rather than save its model).
    ///
    /// # Errors
    /// The metrics log could not be written.
    pub fn finish(&self) -> Result<()> {
        self.bar.finish();
        Ok(self.log.finish()?)
    }
}
