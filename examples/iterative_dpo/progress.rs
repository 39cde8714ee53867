//! A dependency-free progress bar on stderr for long stages (redrawn in place on a terminal,
//! one line per 10 % otherwise).

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// A progress bar for `total` units of work.
pub struct Progress {
    label: String,
    total: usize,
    done: usize,
    start: Instant,
    tty: bool,
    last_decile: usize,
}

impl Progress {
    /// Starts a bar.
    pub fn new(label: impl Into<String>, total: usize) -> Self {
        let p = Progress {
            label: label.into(),
            total: total.max(1),
            done: 0,
            start: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            last_decile: 0,
        };
        p.draw("");
        p
    }

    /// Advances by `n` units, with an optional status text (e.g. the current loss).
    pub fn advance(&mut self, n: usize, status: &str) {
        self.done = (self.done + n).min(self.total);
        let decile = self.done * 10 / self.total;
        if self.tty || decile > self.last_decile {
            self.last_decile = decile;
            self.draw(status);
        }
    }

    fn draw(&self, status: &str) {
        let width = 28;
        let filled = self.done * width / self.total;
        let bar: String = "#".repeat(filled) + &" ".repeat(width - filled);
        let secs = self.start.elapsed().as_secs_f64();
        let line = format!(
            "  {:<22} [{bar}] {:>5}/{:<5} {secs:>6.1}s {status}",
            self.label, self.done, self.total
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
        } else if self.done > 0 {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Ends the bar and returns the elapsed seconds.
    pub fn finish(self) -> f64 {
        let secs = self.start.elapsed().as_secs_f64();
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
        secs
    }
}
