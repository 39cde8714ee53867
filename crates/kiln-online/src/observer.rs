//! [`Observer`]: how a caller watches the loop's long stages (progress bars, one-line notes);
//! the library itself never prints.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// An observer that reports through `tracing` (info level): every note, and every bar at most
/// every `every` and when it finishes. The [`OnlineTrainer`](crate::OnlineTrainer)'s default, so a
/// run with a `tracing` subscriber shows its progress without a terminal.
#[derive(Debug, Clone, Copy)]
pub struct Logged {
    /// The shortest time between two lines of one bar.
    pub every: Duration,
}

impl Default for Logged {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(10),
        }
    }
}

impl Observer for Logged {
    fn bar(&self, label: &str, total: usize) -> Arc<dyn ProgressBar> {
        Arc::new(LoggedBar {
            label: label.to_string(),
            total,
            done: AtomicUsize::new(0),
            every: self.every,
            last: Mutex::new(Instant::now()),
            started: Instant::now(),
        })
    }

    fn note(&self, line: &str) {
        tracing::info!("{}", line.trim());
    }
}

struct LoggedBar {
    label: String,
    total: usize,
    done: AtomicUsize,
    every: Duration,
    last: Mutex<Instant>,
    started: Instant,
}

impl LoggedBar {
    fn maybe_log(&self) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.elapsed() >= self.every {
            *last = Instant::now();
            let done = self.done.load(Ordering::Relaxed);
            tracing::info!("{}: {done}/{}", self.label, self.total);
        }
    }
}

impl ProgressBar for LoggedBar {
    fn set(&self, done: usize) {
        self.done.store(done, Ordering::Relaxed);
        self.maybe_log();
    }

    fn inc(&self, n: usize) {
        self.done.fetch_add(n, Ordering::Relaxed);
        self.maybe_log();
    }

    fn finish(&self) {
        let secs = self.started.elapsed().as_secs_f64();
        tracing::info!("{}: {} done in {secs:.1} s", self.label, self.total);
    }
}

/// What a training stage shows and logs: a bar labelled `label` with the loss and the metric
/// `metric`, and every step in the metrics log `metrics`.
#[derive(Clone, Copy)]
pub struct FitProgress<'a> {
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
pub fn fit<B, M, F>(
    model: M,
    tc: TrainConfig,
    placement: &Placement<B>,
    progress: &FitProgress<'_>,
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
            0 => Some(StepReporter::attach(lp, total, progress)?),
            _ => None,
        };
        train(lp)?;
        monitor.map_or(Ok(()), |m| m.finish())
    };
    Ok(placement.fit(model, tc, run)?.0)
}

/// A training stage's bar and metrics log, attached to a [`TrainLoop`] on rank 0.
struct StepReporter {
    bar: Arc<dyn ProgressBar>,
    log: MetricsLog,
}

impl StepReporter {
    /// Registers on `train` a per-step callback that appends every step to `watch.metrics`
    /// (opened fresh: a killed stage restarts from step 0) and advances a bar of `total` steps.
    /// In a data-parallel run, attach it on rank 0 only.
    ///
    /// # Errors
    /// The log cannot be created.
    fn attach<B: AutodiffBackend, M: AutodiffModule<B>>(
        train: &mut TrainLoop<B, M>,
        total: usize,
        progress: &FitProgress<'_>,
    ) -> kiln_train::Result<Self> {
        let bar = progress.observer.bar(progress.label, total);
        let log = MetricsLog::open(progress.metrics, 0)?;
        let metric = progress.metric;
        let shown = Arc::clone(&bar);
        train.on_step(log.callback_then(move |s: &StepStats| {
            let m = s.metric(metric).unwrap_or(f64::NAN);
            shown.message(format!("loss {:.3} {metric} {m:.2}", s.loss));
            shown.inc(1);
            ControlFlow::Continue(())
        }));
        Ok(StepReporter { bar, log })
    }

    /// Ends the bar and returns the metrics log's error if writing it failed (training stopped
    /// at that step, so the stage must fail rather than save its model).
    ///
    /// # Errors
    /// The metrics log could not be written.
    fn finish(&self) -> kiln_train::Result<()> {
        self.bar.finish();
        self.log.finish()
    }
}
