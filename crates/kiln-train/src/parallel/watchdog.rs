//! [`Watchdog`]: signs of life between the ranks of a multi-process run, so a rank that dies or
//! hangs makes the others stop with an error naming it instead of waiting forever in a
//! collective call.
//!
//! Every rank rewrites `<shared dir>/.kiln-cluster/rank-<r>` with a growing counter every
//! second from a thread of its own (computing does not stop it; only a dead or frozen process
//! does). A collective call runs on a helper thread while the caller polls: when any rank's
//! file has not changed for the timeout, the call returns [`Error::PeerLost`] naming that rank
//! (the helper thread is abandoned; the process is expected to exit with the error).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

const BEAT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(200);
/// What a rank writes when it left the run cleanly.
const LEFT: &str = "left";

/// Heartbeats of every rank (see the module docs).
#[derive(Debug)]
pub struct Watchdog {
    dir: PathBuf,
    rank: usize,
    world: usize,
    timeout: Duration,
    /// Per rank: the last content seen and when it last changed.
    seen: Mutex<Vec<(String, Instant)>>,
    stop: Arc<AtomicBool>,
}

impl Watchdog {
    /// Starts beating for `rank` of `world` under `shared_dir/.kiln-cluster`.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be created or written.
    pub fn start(shared_dir: &Path, rank: usize, world: usize, timeout: Duration) -> Result<Self> {
        let dir = shared_dir.join(".kiln-cluster");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let own = dir.join(format!("rank-{rank}"));
        std::fs::write(&own, "0").map_err(|e| Error::io(&own, e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n: u64 = 0;
            while !flag.load(Ordering::Relaxed) {
                n += 1;
                if let Err(e) = std::fs::write(&own, n.to_string()) {
                    tracing::warn!(file = %own.display(), error = %e, "heartbeat not written");
                }
                std::thread::sleep(BEAT);
            }
        });
        let now = Instant::now();
        Ok(Self {
            dir,
            rank,
            world,
            timeout,
            seen: Mutex::new(vec![(String::new(), now); world]),
            stop,
        })
    }

    fn file(&self, rank: usize) -> PathBuf {
        self.dir.join(format!("rank-{rank}"))
    }

    /// `Err(PeerLost)` for the first rank silent for longer than the timeout.
    ///
    /// # Errors
    /// [`Error::PeerLost`].
    pub fn check(&self) -> Result<()> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        for (rank, (last, since)) in seen.iter_mut().enumerate() {
            if rank == self.rank {
                continue;
            }
            let current = std::fs::read_to_string(self.file(rank)).unwrap_or_default();
            if current != *last && current != LEFT {
                *last = current;
                *since = now;
            } else if now.duration_since(*since) > self.timeout {
                return Err(Error::PeerLost {
                    rank,
                    seconds: self.timeout.as_secs_f64(),
                    left: current == LEFT,
                });
            }
        }
        Ok(())
    }

    /// Runs `op` (a blocking collective call) on a helper thread and waits for it, checking the
    /// other ranks' heartbeats; `deadline` also bounds the wait itself (joining the run).
    ///
    /// # Errors
    /// `op`'s error; [`Error::PeerLost`]; [`Error::Collective`] when `deadline` passes or `op`
    /// panicked.
    pub fn guarded<T: Send + 'static>(
        &self,
        what: &str,
        deadline: Option<Duration>,
        op: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let _ = tx.send(op());
        });
        let start = Instant::now();
        loop {
            match rx.recv_timeout(POLL) {
                Ok(Err(Error::Collective(e))) => return Err(self.explain(what, e)),
                Ok(out) => return out,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::PeerPanicked { what: what.into() });
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.check() {
                        tracing::error!(what, error = %e, "stopping");
                        return Err(e);
                    }
                    if let Some(d) = deadline
                        && start.elapsed() > d
                    {
                        return Err(Error::Collective(format!(
                            "{what}: no answer within {:.0} s (are all {} ranks started, with the \
                             same MASTER_ADDR and MASTER_PORT?)",
                            d.as_secs_f64(),
                            self.world
                        )));
                    }
                }
            }
        }
    }

    /// The error for a collective call that failed (burn-collective's own error when a
    /// connection to a dead rank breaks says nothing of the rank): waits up to the timeout for a
    /// rank to fall silent and names it; otherwise the engine's words.
    fn explain(&self, what: &str, engine: String) -> Error {
        let start = Instant::now();
        while start.elapsed() <= self.timeout + BEAT {
            if let Err(e) = self.check() {
                tracing::error!(what, engine, error = %e, "stopping");
                return e;
            }
            std::thread::sleep(POLL);
        }
        Error::Collective(format!("{what}: {engine}"))
    }

    /// Waits (at most the timeout) until every other rank has marked itself as gone, so rank 0
    /// keeps the orchestrator up while they leave.
    pub fn wait_for_others_to_leave(&self) {
        let start = Instant::now();
        while start.elapsed() < self.timeout {
            let gone = (0..self.world)
                .filter(|&r| r != self.rank)
                .all(|r| std::fs::read_to_string(self.file(r)).is_ok_and(|s| s == LEFT));
            if gone {
                return;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Stops beating and marks this rank as gone.
    pub fn leave(&self) {
        self.stop.store(true, Ordering::Relaxed);
        // The beating thread may write once more after the flag: let it finish its sleep.
        std::thread::sleep(BEAT + POLL);
        let own = self.file(self.rank);
        if let Err(e) = std::fs::write(&own, LEFT) {
            tracing::warn!(file = %own.display(), error = %e, "leaving mark not written");
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
