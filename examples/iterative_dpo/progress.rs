//! Progress bars (indicatif) for the loop's long stages: drawn in place on a terminal; elsewhere
//! (CI logs, pipes) one summary line per finished stage.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// A progress bar for `total` units of work; cheap to clone (closures and callbacks hold copies).
#[derive(Clone)]
pub struct Bar {
    bar: ProgressBar,
    label: String,
    tty: bool,
}

impl Bar {
    /// Starts a bar labelled `label`.
    pub fn new(label: impl Into<String>, total: usize) -> Self {
        let label = label.into();
        let tty = std::io::stderr().is_terminal();
        let bar = ProgressBar::with_draw_target(
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
            .expect("valid template")
            .progress_chars("#>-"),
        );
        bar.set_prefix(label.clone());
        bar.enable_steady_tick(Duration::from_millis(250));
        Bar { bar, label, tty }
    }

    /// Advances by `n` units.
    pub fn inc(&self, n: usize) {
        self.bar.inc(n as u64);
    }

    /// Sets the position to `done` units.
    pub fn set(&self, done: usize) {
        self.bar.set_position(done as u64);
    }

    /// Sets the status text (e.g. the current loss).
    pub fn message(&self, msg: impl Into<String>) {
        self.bar.set_message(msg.into());
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
