//! Progress bars (indicatif) for the loop's long stages: drawn in place on a terminal; elsewhere
//! (CI logs, SLURM files, pipes) a progress line every `KILN_PROGRESS_SECS` seconds (default 30;
//! 0 = none) while the stage advances, and one summary line per finished stage. Training stages
//! also write every optimiser step to a metrics file (`kiln::online::monitored`). [`Console`] is
//! the loop's `kiln::online::Observer`.

use indicatif::{ProgressDrawTarget, ProgressStyle};
use kiln::online::{Observer, ProgressBar};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The environment variable that sets the interval of progress lines off a terminal.
const INTERVAL_ENV: &str = "KILN_PROGRESS_SECS";
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// The interval of progress lines off a terminal (`None`: only the final line); read once.
fn interval() -> Option<Duration> {
    static INTERVAL: OnceLock<Option<Duration>> = OnceLock::new();
    *INTERVAL.get_or_init(|| {
        let Ok(text) = std::env::var(INTERVAL_ENV) else {
            return Some(DEFAULT_INTERVAL);
        };
        match text.trim().parse::<f64>() {
            Ok(0.0) => None,
            Ok(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
            _ => {
                eprintln!(
                    "warning: {INTERVAL_ENV}={text:?} is not a number of seconds >= 0; using {}",
                    DEFAULT_INTERVAL.as_secs()
                );
                Some(DEFAULT_INTERVAL)
            }
        }
    })
}

/// A progress bar for `total` units of work; cheap to clone (closures and callbacks hold copies).
/// Set the status text with [`Bar::message`] before advancing, so a progress line printed off a
/// terminal shows the status of the position it reports.
#[derive(Clone)]
pub struct Bar {
    bar: indicatif::ProgressBar,
    label: String,
    tty: bool,
    /// Off a terminal: the interval of progress lines and the elapsed time of the last one.
    lines: Option<(Duration, Arc<Mutex<Duration>>)>,
}

impl Bar {
    /// Starts a bar labelled `label`.
    pub fn new(label: impl Into<String>, total: usize) -> Self {
        let label = label.into();
        let tty = std::io::stderr().is_terminal();
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total as u64),
            if tty {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "  {prefix:<22} [{bar:28}] {pos:>5}/{len:<5} {elapsed:>4} (eta {eta:>3}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#>-"),
        );
        bar.set_prefix(label.clone());
        bar.enable_steady_tick(Duration::from_millis(250));
        let lines = if tty {
            None
        } else {
            interval().map(|every| (every, Arc::new(Mutex::new(Duration::ZERO))))
        };
        Bar {
            bar,
            label,
            tty,
            lines,
        }
    }

    /// Advances by `n` units.
    pub fn inc(&self, n: usize) {
        self.bar.inc(n as u64);
        self.maybe_line();
    }

    /// Sets the position to `done` units.
    pub fn set(&self, done: usize) {
        self.bar.set_position(done as u64);
        self.maybe_line();
    }

    /// Sets the status text (e.g. the current loss).
    pub fn message(&self, msg: impl Into<String>) {
        self.bar.set_message(msg.into());
    }

    /// Off a terminal: prints a progress line when the interval has passed since the last one
    /// (or since the start), unless the stage is complete (its final line follows).
    fn maybe_line(&self) {
        let Some((every, last)) = &self.lines else {
            return;
        };
        let elapsed = self.bar.elapsed();
        let pos = self.bar.position();
        let len = self.bar.length().unwrap_or(0);
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if elapsed < *last + *every || pos >= len {
            return;
        }
        *last = elapsed;
        eprintln!(
            "  {:<22} {pos}/{len} {} (eta {}) {}",
            self.label,
            clock(elapsed),
            clock(self.bar.eta()),
            self.bar.message()
        );
    }

    /// Ends the bar; off a terminal, prints one line with the elapsed time and the last status.
    pub fn finish(&self) {
        self.bar.finish();
        if !self.tty {
            eprintln!(
                "  {:<22} {}/{} in {:.1}s {}",
                self.label,
                self.bar.position(),
                self.bar.length().unwrap_or(0),
                self.bar.elapsed().as_secs_f64(),
                self.bar.message()
            );
        }
    }
}

/// `42s`, `3m07s`, `1h02m`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// The loop's observer: a [`Bar`] per long stage, notes on stderr.
pub struct Console;

impl Observer for Console {
    fn bar(&self, label: &str, total: usize) -> Arc<dyn ProgressBar> {
        Arc::new(Bar::new(label, total))
    }

    fn note(&self, line: &str) {
        eprintln!("{line}");
    }
}

impl ProgressBar for Bar {
    fn set(&self, done: usize) {
        Bar::set(self, done);
    }
    fn inc(&self, n: usize) {
        Bar::inc(self, n);
    }
    fn message(&self, message: String) {
        Bar::message(self, message);
    }
    fn finish(&self) {
        Bar::finish(self);
    }
}
