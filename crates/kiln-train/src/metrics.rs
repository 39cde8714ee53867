//! [`MetricsLog`]: every optimiser step's metrics as one JSON object per line (`metrics.jsonl`),
//! readable while training runs, resumable without duplicate steps.
//!
//! One line per optimiser step, keys in this order:
//!
//! ```text
//! {"step":1,"loss":0.6931,"grad_norm":1.25,"learning_rate":0.0,"rewards/chosen":0.0,...}
//! ```
//!
//! `step` (1-based), `loss` (mean over the step's micro-batches), `grad_norm` (global norm before
//! clipping), `learning_rate` (the rate of that update), then the trainer's own metrics
//! ([`StepStats::metrics`]) under their names: TRL's names for DPO (`rewards/chosen`,
//! `rewards/rejected`, `rewards/accuracies`, `rewards/margins`, `logps/chosen`, `logps/rejected`,
//! plus `nll/chosen` with an NLL term), `nll` and `tokens` for SFT, `accuracy` and `margin` for the
//! reward model, `rank_loss` and `sft_loss` for RRHF. Values are `f64` written exactly (shortest
//! round-trip form); a non-finite value is written as `null`.
//!
//! [`MetricsLog::open`]`(path, resume_from_step)` keeps the records of steps `1..=resume_from_step`
//! already in the file and drops the rest (rewriting the file atomically), so a run restarted from
//! scratch (`0`) starts a fresh file and a run resumed from a checkpoint at step `s`
//! ([`TrainLoop::step`](crate::TrainLoop::step) after [`TrainLoop::resume`](crate::TrainLoop::resume))
//! appends after step `s` without duplicates. Each line is written with a single `write` to the
//! file opened for appending (no user-space buffer), so `tail -f` sees every step as it is taken and
//! a killed process leaves at most one torn last line, which the next `open` drops.
//!
//! # Errors while training
//! [`MetricsLog::callback`] and [`MetricsLog::callback_then`] turn the log into a
//! [`TrainLoop::on_step`](crate::TrainLoop::on_step) callback. A callback cannot return an error,
//! so when a line cannot be written (disk full, file removed, a step logged twice) the callback
//! stores the error, reports it through `tracing::error!` and returns `ControlFlow::Break(())`:
//! training stops after that step instead of running on unobserved. [`MetricsLog::finish`] returns
//! the stored error; call it after the trainer returns and before saving the model, so a stage
//! whose log failed fails too.
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::nn::{Linear, LinearConfig};
//! use burn::tensor::{Tensor, TensorData};
//! use kiln_train::{MetricsLog, StepLoss, TrainConfig, TrainLoop};
//!
//! type B = Autodiff<Flex>;
//! let dir = std::env::temp_dir().join(format!("kiln-metrics-doc-{}", std::process::id()));
//! let path = dir.join("metrics.jsonl");
//! let device = Default::default();
//! let model: Linear<B> = LinearConfig::new(2, 1).init(&device);
//! let mut train = TrainLoop::new(model, TrainConfig::new(3).with_micro_batch_size(2))?;
//! let log = MetricsLog::open(&path, train.step())?;
//! train.on_step(log.callback());
//! train.fit(
//!     4,
//!     3,
//!     |idx| Ok(idx.to_vec()),
//!     |model: &Linear<B>, idx: &Vec<usize>| {
//!         let xs: Vec<f32> = idx.iter().flat_map(|&i| [i as f32, 1.0]).collect();
//!         let x = Tensor::<B, 2>::from_data(TensorData::new(xs, [idx.len(), 2]), &device);
//!         Ok(StepLoss::new(model.forward(x).square().mean()).with_metric("rows", idx.len() as f64))
//!     },
//! )?;
//! log.finish()?;
//! let records = MetricsLog::read(&path)?;
//! assert_eq!(records.len(), 3);
//! assert_eq!(records[2]["step"], 3);
//! assert_eq!(records[0]["rows"], 2.0);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), kiln_train::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::train_loop::StepStats;

/// The keys every record starts with; a trainer metric may not reuse them.
const FIXED_KEYS: [&str; 4] = ["step", "loss", "grad_norm", "learning_rate"];

/// An append-only per-step metrics file (see the module docs). Cheap to clone: clones share the
/// file, the last logged step and the stored error, so one clone can live in a
/// [`TrainLoop::on_step`](crate::TrainLoop::on_step) callback while another calls
/// [`Self::finish`].
#[derive(Debug, Clone)]
pub struct MetricsLog {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: File,
    last_step: usize,
    records: usize,
    error: Option<Error>,
}

impl MetricsLog {
    /// Opens `path` for appending after step `resume_from_step`: the records of steps
    /// `1..=resume_from_step` already in the file are kept (one per step, the last one when a step
    /// repeats, in step order), later ones dropped, and the file is rewritten atomically
    /// (`kiln_data::atomic`). A missing file (and missing parent directories) is created.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file; [`Error::Metrics`] naming the line of a record that is not a
    /// JSON object with an integer `step` (except a torn last line without a newline, which is
    /// dropped).
    pub fn open(path: impl AsRef<Path>, resume_from_step: usize) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut kept: BTreeMap<usize, String> = BTreeMap::new();
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            for record in parse(&path, &text)? {
                if record.step <= resume_from_step {
                    kept.insert(record.step, record.line.to_string());
                }
            }
        }
        let mut text = String::new();
        for line in kept.values() {
            text.push_str(line);
            text.push('\n');
        }
        kiln_data::atomic::write_bytes(&path, text.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let last_step = kept.keys().next_back().copied().unwrap_or(0);
        tracing::debug!(path = %path.display(), kept = kept.len(), resume_from_step, "metrics log opened");
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                path,
                file,
                last_step,
                records: kept.len(),
                error: None,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves the state usable: each field is updated
        // only after the write it describes succeeded.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The file.
    pub fn path(&self) -> PathBuf {
        self.lock().path.clone()
    }

    /// The last step in the file (0 for none).
    pub fn last_step(&self) -> usize {
        self.lock().last_step
    }

    /// Number of records in the file.
    pub fn len(&self) -> usize {
        self.lock().records
    }

    /// Whether the file holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a callback stored an error that [`Self::finish`] has not returned yet.
    pub fn failed(&self) -> bool {
        self.lock().error.is_some()
    }

    /// Appends the record of one optimiser step and writes it out.
    ///
    /// # Errors
    /// [`Error::Metrics`] when `stats.step` is not after the last logged step, or a trainer metric
    /// repeats a name (or uses one of `step`, `loss`, `grad_norm`, `learning_rate`); [`Error::Io`]
    /// naming the file when the write fails. Nothing is written then.
    pub fn log(&self, stats: &StepStats) -> Result<()> {
        let mut inner = self.lock();
        if stats.step <= inner.last_step {
            return Err(Error::Metrics {
                path: inner.path.clone(),
                message: format!(
                    "step {} logged after step {}: steps must increase (open the log with the step \
                     training resumes from)",
                    stats.step, inner.last_step
                ),
            });
        }
        let line = record_line(stats).map_err(|message| Error::Metrics {
            path: inner.path.clone(),
            message,
        })?;
        let Inner { file, path, .. } = &mut *inner;
        file.write_all(line.as_bytes())
            .map_err(|e| Error::io(&*path, e))?;
        inner.last_step = stats.step;
        inner.records += 1;
        Ok(())
    }

    /// Logs `stats` as a callback does: on error, stores it (the first one), reports it through
    /// `tracing` and breaks. Once an error is stored, nothing more is written.
    fn log_or_break(&self, stats: &StepStats) -> ControlFlow<()> {
        if self.failed() {
            return ControlFlow::Break(());
        }
        match self.log(stats) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                tracing::error!(step = stats.step, error = %e, "cannot write the metrics log: training stops");
                self.lock().error = Some(e);
                ControlFlow::Break(())
            }
        }
    }

    /// A [`TrainLoop::on_step`](crate::TrainLoop::on_step) callback that logs every step. When a
    /// step cannot be logged it stops training (`Break`) and keeps the error for
    /// [`Self::finish`].
    pub fn callback(&self) -> impl FnMut(&StepStats) -> ControlFlow<()> + Send + 'static {
        let log = self.clone();
        move |stats: &StepStats| log.log_or_break(stats)
    }

    /// [`Self::callback`] followed by `next` (e.g. a progress bar or an early-stopping rule):
    /// `next` sees every logged step, and training stops when either breaks.
    pub fn callback_then<F>(
        &self,
        mut next: F,
    ) -> impl FnMut(&StepStats) -> ControlFlow<()> + 'static
    where
        F: FnMut(&StepStats) -> ControlFlow<()> + 'static,
    {
        let log = self.clone();
        move |stats: &StepStats| {
            log.log_or_break(stats)?;
            next(stats)
        }
    }

    /// Ends logging: returns the error a callback stored (and clears it), else makes the file
    /// durable (`fsync`). Call it after training, before saving the model.
    ///
    /// # Errors
    /// The stored error, or [`Error::Io`] naming the file.
    pub fn finish(&self) -> Result<()> {
        let mut inner = self.lock();
        if let Some(e) = inner.error.take() {
            return Err(e);
        }
        let Inner { file, path, .. } = &mut *inner;
        file.sync_data().map_err(|e| Error::io(&*path, e))
    }

    /// The records of a metrics file, in file order (each a JSON object with an integer `step`).
    /// A torn last line (no newline, not valid JSON: the process was killed mid-write) is
    /// skipped.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file; [`Error::Metrics`] naming a malformed line.
    pub fn read(path: impl AsRef<Path>) -> Result<Vec<Map<String, Value>>> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Ok(parse(path, &text)?.into_iter().map(|r| r.object).collect())
    }
}

/// One parsed line of a metrics file.
struct Record<'a> {
    step: usize,
    line: &'a str,
    object: Map<String, Value>,
}

fn parse<'a>(path: &Path, text: &'a str) -> Result<Vec<Record<'a>>> {
    let mut out = Vec::new();
    let mut lines = text.split_inclusive('\n').enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let line = raw.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| Error::Metrics {
            path: path.to_path_buf(),
            message: format!("line {}: {message}", i + 1),
        };
        let object = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return Err(bad("not a JSON object".into())),
            Err(e) if lines.peek().is_none() && !raw.ends_with('\n') => {
                tracing::warn!(path = %path.display(), line = i + 1, error = %e, "dropping a torn last line of the metrics log");
                continue;
            }
            Err(e) => return Err(bad(e.to_string())),
        };
        let step = object
            .get("step")
            .and_then(Value::as_u64)
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| bad("no integer `step`".into()))?;
        out.push(Record { step, line, object });
    }
    Ok(out)
}

/// `{"step":..,"loss":..,"grad_norm":..,"learning_rate":..,<metric>:..}` plus a newline.
fn record_line(stats: &StepStats) -> std::result::Result<String, String> {
    let fixed = [
        ("loss", stats.loss),
        ("grad_norm", stats.grad_norm),
        ("learning_rate", stats.lr),
    ];
    for (i, (name, _)) in stats.metrics.iter().enumerate() {
        if FIXED_KEYS.contains(&name.as_str()) || stats.metrics[..i].iter().any(|(n, _)| n == name)
        {
            return Err(format!(
                "step {}: metric name `{name}` repeats a name of the record",
                stats.step
            ));
        }
    }
    let metrics = stats.metrics.iter().map(|(n, v)| (n.as_str(), *v));
    let mut line = String::with_capacity(80 + 32 * stats.metrics.len());
    line.push_str("{\"step\":");
    line.push_str(&stats.step.to_string());
    for (name, value) in fixed.into_iter().chain(metrics) {
        // Shortest round-trip form of the f64; `null` when it is not finite.
        let (key, text) = serde_json::to_string(name)
            .and_then(|k| Ok((k, serde_json::to_string(&value)?)))
            .map_err(|e| format!("step {}: metric `{name}`: {e}", stats.step))?;
        line.push(',');
        line.push_str(&key);
        line.push(':');
        line.push_str(&text);
    }
    line.push_str("}\n");
    Ok(line)
}
