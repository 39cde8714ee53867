//! [`Session`]: one run's output directory and placement. It joins the multi-process run that
//! torchrun's environment describes (rank 0 starts the orchestrator), pins the run's settings in
//! `config.json` on every rank, runs stages as one rank of the team, and leaves the run when it
//! is finished or dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use kiln_data::atomic::{read_json, write_json};
use kiln_train::{Cluster, Launch, Placement, Team};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::observer::Observer;
use crate::stage::{StageHook, StageRunner};

/// One run's directory, stages and placement (see the module docs).
pub struct Session<B: AutodiffBackend> {
    root: StageRunner,
    placement: Placement<B>,
    cluster: Option<Arc<Cluster<B>>>,
    started: Instant,
}

impl<B: AutodiffBackend> std::fmt::Debug for Session<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("dir", &self.root.dir())
            .field("peers", &self.placement.peers())
            .finish_non_exhaustive()
    }
}

impl<B: AutodiffBackend> Session<B> {
    /// Opens (creating it) the run directory `out` with one peer per device of `devices` (an
    /// empty list: the default device; on a CPU, repeat its device for several peers). When the
    /// environment describes a multi-process launch (`WORLD_SIZE` > 1 with `RANK`,
    /// `MASTER_ADDR`, `MASTER_PORT`), joins it; `out` must then be seen by every rank.
    ///
    /// # Errors
    /// A malformed launch environment (the variable named), the directory cannot be created
    /// (named), or the ranks do not all join in time.
    pub fn open(out: impl AsRef<Path>, devices: Vec<B::Device>) -> Result<Self> {
        let out = out.as_ref();
        let devices = if devices.is_empty() {
            vec![B::Device::default()]
        } else {
            devices
        };
        let root = StageRunner::open(out)?;
        let cluster = match Launch::from_env()? {
            Some(launch) => {
                tracing::info!(
                    rank = launch.rank,
                    world = launch.world,
                    orchestrator = %launch.orchestrator_url(),
                    "joining the run"
                );
                Some(Arc::new(Cluster::join(launch, devices.clone(), out)?))
            }
            None => None,
        };
        let placement = match &cluster {
            Some(c) => Placement::cluster(Arc::clone(c)),
            None => Placement::devices(devices),
        };
        let root = root.with_team(placement.team());
        if let Some(team) = placement.team() {
            // Gather parts of a run killed mid-gather would be read by the resumed run's first
            // gathers of the same numbers: rank 0 clears them before anyone writes.
            if team.rank() == 0 {
                let stale = out.join(".kiln-gather");
                if stale.exists() {
                    std::fs::remove_dir_all(&stale).map_err(|e| Error::io(&stale, e))?;
                }
            }
            team.barrier("session open")?;
        }
        Ok(Session {
            root,
            placement,
            cluster,
            started: Instant::now(),
        })
    }

    /// The same session calling `hook` at every stage boundary (an error it returns stops the
    /// run there, as a kill would: cancellation, fault injection in tests).
    pub fn with_hook(mut self, hook: Option<StageHook>) -> Self {
        self.root.set_hook(hook);
        self
    }

    /// The run directory's stages (`config.json`, the setup's and the loop's files).
    pub fn stages(&mut self) -> &mut StageRunner {
        &mut self.root
    }

    /// Where training and sharded work run.
    pub fn placement(&self) -> &Placement<B> {
        &self.placement
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        self.root.dir()
    }

    /// `name` inside the run directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path(name)
    }

    /// The processes of the run, when there are several.
    pub fn team(&self) -> Option<Arc<dyn Team>> {
        self.placement.team()
    }

    /// Whether this process writes the shared files (rank 0, or the only process).
    pub fn is_lead(&self) -> bool {
        self.root.is_lead()
    }

    /// Seconds since the session was opened.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Pins the run's settings: the first time, rank 0 writes them to `config.json`; later (a
    /// resumed run) and on the other ranks they must equal what it holds, so a run directory is
    /// never continued with other settings. Idempotent.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first key that differs; I/O errors naming the file;
    /// the team's barrier.
    pub fn pin_settings(&self, settings: &Value, observer: &dyn Observer) -> Result<()> {
        let path = self.root.path("config.json");
        let existed = path.exists();
        if self.is_lead() && !existed {
            write_json(&path, settings)?;
        }
        if let Some(team) = self.team() {
            team.barrier("config.json")?;
        }
        if existed || !self.is_lead() {
            let pinned: Value = read_json(&path)?;
            if let Some(key) = first_difference("", &pinned, settings) {
                return Err(Error::InvalidConfig(format!(
                    "{} holds a run with other settings ({key}); use another output directory \
                     (or delete it)",
                    self.dir().display()
                )));
            }
            if existed && self.is_lead() {
                observer.note(&format!("resuming the run in {}", self.dir().display()));
            }
        }
        Ok(())
    }

    /// Leaves the run: rank 0 keeps the orchestrator up until every rank has left.
    ///
    /// # Errors
    /// The cluster's.
    pub fn finish(mut self) -> Result<()> {
        self.leave()
    }

    fn leave(&mut self) -> Result<()> {
        let Some(cluster) = self.cluster.take() else {
            return Ok(());
        };
        self.placement = Placement::devices(self.placement.local_devices().to_vec());
        self.root.set_team(None);
        match Arc::try_unwrap(cluster) {
            Ok(c) => Ok(c.finish()?),
            Err(_) => Err(Error::InvalidInput(
                "the run's cluster is still in use when the session ends".into(),
            )),
        }
    }
}

impl<B: AutodiffBackend> Drop for Session<B> {
    /// Leaves the run when [`Session::finish`] was not called (an error on the way): the other
    /// ranks are told instead of waiting for a peer that is gone.
    fn drop(&mut self) {
        if let Err(e) = self.leave() {
            tracing::warn!(error = %e, "leaving the run");
        }
    }
}

/// The path of the first value that differs between `a` and `b` (`key: a vs b`), if any.
fn first_difference(prefix: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => first_difference(&path, u, v),
                    (u, v) => Some(format!(
                        "`{path}`: {} in config.json, {} now",
                        u.map_or("absent".into(), Value::to_string),
                        v.map_or("absent".into(), Value::to_string)
                    )),
                }
            })
        }
        _ if a == b => None,
        _ => Some(format!("`{prefix}`: {a} in config.json, {b} now")),
    }
}

#[cfg(test)]
mod tests {
    use super::first_difference;

    #[test]
    fn the_first_differing_key_is_named() {
        let a = serde_json::json!({"dpo": {"loss": {"beta": 0.1}}, "seed": 1});
        let b = serde_json::json!({"dpo": {"loss": {"beta": 0.5}}, "seed": 1});
        let d = first_difference("", &a, &b).unwrap();
        assert!(
            d.contains("dpo.loss.beta") && d.contains("0.1") && d.contains("0.5"),
            "{d}"
        );
        assert_eq!(first_difference("", &a, &a), None);
        let c = serde_json::json!({"seed": 1});
        assert!(first_difference("", &c, &a).unwrap().contains("absent"));
    }
}
