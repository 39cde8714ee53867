//! [`StageRunner`]: resumable pipeline stages. "Run this stage unless its outputs exist; write
//! its outputs atomically; remember how long it took."
//!
//! A stage declares its outputs (files or directories, by name inside the runner's directory) and
//! writes each into the temporary path [`StageOutputs::path`] gives; only when the stage's closure
//! returns `Ok` are the outputs renamed into place, in declaration order. A stage whose outputs all
//! exist is skipped, so a process killed anywhere (mid-stage, mid-write of a checkpoint, during the
//! renames) resumes at the first unfinished stage, and leftovers of the killed attempt are removed
//! before the stage runs again. Stage wall times persist in `timings.json` beside the outputs, so a
//! resumed run still reports them.
//!
//! An optional [`StageHook`] is called at every stage boundary ([`StageEvent`]); an error it returns
//! aborts the run there, exactly where a kill would (cancellation, and fault injection in tests).
//!
//! ```
//! use kiln_online::StageRunner;
//! let dir = std::env::temp_dir().join(format!("kiln-stage-doc-{}", std::process::id()));
//! let mut stages = StageRunner::open(&dir)?;
//! let mut runs = 0;
//! for _ in 0..2 {
//!     stages.run("count", &["count.txt"], |out| {
//!         runs += 1;
//!         std::fs::write(out.path("count.txt")?, "42").map_err(|e| kiln_online::Error::io(&dir, e))
//!     })?;
//! }
//! assert_eq!(runs, 1, "the second call finds the output and skips the stage");
//! assert_eq!(std::fs::read_to_string(dir.join("count.txt")).unwrap(), "42");
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), kiln_online::Error>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use kiln_train::parallel::Team;

use crate::error::{Error, Result};

/// Where a stage is when the [`StageHook`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageEvent {
    /// The stage is about to run (its outputs are missing).
    Start,
    /// The stage's closure finished and its outputs sit in their temporary paths, not yet renamed
    /// into place (a kill here is a kill "mid-write").
    Written,
    /// The outputs were renamed into place and the timing recorded.
    Done,
}

/// Called at every stage boundary with the runner's directory, the stage name and the event; an
/// `Err(reason)` aborts the run at that point ([`Error::Interrupted`] with the reason).
pub type StageHook =
    Arc<dyn Fn(&Path, &str, StageEvent) -> std::result::Result<(), String> + Send + Sync>;

/// What [`StageRunner::run`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StageStatus {
    /// The stage ran and took `seconds`.
    Ran {
        /// Wall time of the stage closure and the renames.
        seconds: f64,
    },
    /// Its outputs already existed.
    Skipped,
}

/// The temporary paths a running stage writes its outputs into.
#[derive(Debug)]
pub struct StageOutputs {
    paths: Vec<(String, PathBuf)>,
}

impl StageOutputs {
    /// The temporary path of output `name` (one of the names given to [`StageRunner::run`]):
    /// write a file there, or create a directory there (e.g. `save_pretrained(path)`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `name` and the declared outputs when `name` was not
    /// declared.
    pub fn path(&self, name: &str) -> Result<&Path> {
        self.paths
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.as_path())
            .ok_or_else(|| {
                let declared: Vec<&str> = self.paths.iter().map(|(n, _)| n.as_str()).collect();
                Error::InvalidInput(format!(
                    "stage output `{name}` was not declared (declared: {})",
                    declared.join(", ")
                ))
            })
    }
}

/// A directory of resumable stages (see the module docs).
pub struct StageRunner {
    dir: PathBuf,
    timings: BTreeMap<String, f64>,
    hook: Option<StageHook>,
    team: Option<Arc<dyn Team>>,
}

/// Which ranks of a [`Team`] run a stage's closure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Every,
    Lead,
}

impl std::fmt::Debug for StageRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageRunner")
            .field("dir", &self.dir)
            .field("timings", &self.timings)
            .field("hook", &self.hook.is_some())
            .field("team", &self.team.as_ref().map(|t| (t.rank(), t.world())))
            .finish()
    }
}

const TIMINGS: &str = "timings.json";

impl StageRunner {
    /// Opens (creating it if needed) the stage directory `dir` and reads its `timings.json`.
    ///
    /// # Errors
    /// [`Error::Io`] naming `dir` when it cannot be created (e.g. a file is in the way, or no
    /// permission), or a malformed `timings.json` (named).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join(TIMINGS);
        let timings = if path.exists() {
            kiln_data::atomic::read_json(&path)?
        } else {
            BTreeMap::new()
        };
        Ok(StageRunner {
            dir,
            timings,
            hook: None,
            team: None,
        })
    }

    /// Runs the stages as one rank of `team` (a multi-process run; see [`Self::run`]).
    pub fn with_team(mut self, team: Option<Arc<dyn Team>>) -> Self {
        self.team = team;
        self
    }

    pub(crate) fn set_team(&mut self, team: Option<Arc<dyn Team>>) {
        self.team = team;
    }

    pub(crate) fn set_hook(&mut self, hook: Option<StageHook>) {
        self.hook = hook;
    }

    /// Whether this process writes the shared files (rank 0, or no team).
    pub fn is_lead(&self) -> bool {
        self.team.as_ref().is_none_or(|t| t.rank() == 0)
    }

    /// Sets the hook called at every stage boundary (see [`StageHook`]).
    pub fn with_hook(mut self, hook: Option<StageHook>) -> Self {
        self.hook = hook;
        self
    }

    /// A runner for the subdirectory `name` (created), with the same hook.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn child(&self, name: &str) -> Result<Self> {
        Ok(Self::open(self.dir.join(name))?
            .with_hook(self.hook.clone())
            .with_team(self.team.clone()))
    }

    /// The stage directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The final path of output `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether every one of `outputs` exists.
    pub fn is_done(&self, outputs: &[&str]) -> bool {
        outputs.iter().all(|o| self.dir.join(o).exists())
    }

    /// Seconds the stage `name` took when it ran (also in an earlier, resumed process).
    pub fn seconds(&self, name: &str) -> Option<f64> {
        self.timings.get(name).copied()
    }

    /// Every recorded stage time.
    pub fn timings(&self) -> &BTreeMap<String, f64> {
        &self.timings
    }

    /// Sum of the recorded stage times.
    pub fn total_seconds(&self) -> f64 {
        self.timings.values().fold(0.0, |a, b| a + b)
    }

    /// Records `seconds` for `name` (for work timed outside [`Self::run`]) and persists it.
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Data`] when `timings.json` cannot be written.
    pub fn record(&mut self, name: &str, seconds: f64) -> Result<()> {
        self.timings.insert(name.to_string(), seconds);
        if self.is_lead() {
            kiln_data::atomic::write_json(self.dir.join(TIMINGS), &self.timings)?;
        }
        Ok(())
    }

    /// The team's barrier at the end of a stage (nothing without a team).
    fn sync(&self, name: &str) -> Result<()> {
        match &self.team {
            Some(team) => Ok(team.barrier(&format!("stage {name} in {}", self.dir.display()))?),
            None => Ok(()),
        }
    }

    fn call_hook(&self, name: &str, event: StageEvent) -> Result<()> {
        match &self.hook {
            Some(hook) => hook(&self.dir, name, event).map_err(|reason| Error::Interrupted {
                dir: self.dir.clone(),
                stage: name.to_string(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Runs stage `name` unless all `outputs` exist. `f` writes each output into
    /// [`StageOutputs::path`]; after it returns `Ok`, the outputs are renamed into place in the
    /// given order (put the output that marks completion last) and the time is recorded.
    ///
    /// With a [`Team`], every rank runs `f` (so it can take part in collective work: sharded
    /// generation, data-parallel training) and rank 0's outputs are renamed into place; the
    /// other ranks write into a private scratch directory that is removed. Every rank then waits
    /// at a barrier, skipped stages included, so all ranks see the same files at the next stage.
    ///
    /// # Errors
    /// `f`'s error (nothing is renamed into place), an output `f` did not write
    /// ([`Error::InvalidInput`] naming it), I/O errors naming the path, the hook's error, or
    /// the team's.
    pub fn run<E: From<Error>>(
        &mut self,
        name: &str,
        outputs: &[&str],
        f: impl FnOnce(&StageOutputs) -> std::result::Result<(), E>,
    ) -> std::result::Result<StageStatus, E> {
        self.run_as(Who::Every, name, outputs, f)
    }

    /// As [`Self::run`], but with a [`Team`] only rank 0 runs `f` (work that is not shared:
    /// evaluation, data preparation); the others wait at the barrier.
    ///
    /// # Errors
    /// As [`Self::run`].
    pub fn run_lead<E: From<Error>>(
        &mut self,
        name: &str,
        outputs: &[&str],
        f: impl FnOnce(&StageOutputs) -> std::result::Result<(), E>,
    ) -> std::result::Result<StageStatus, E> {
        self.run_as(Who::Lead, name, outputs, f)
    }

    fn run_as<E: From<Error>>(
        &mut self,
        who: Who,
        name: &str,
        outputs: &[&str],
        f: impl FnOnce(&StageOutputs) -> std::result::Result<(), E>,
    ) -> std::result::Result<StageStatus, E> {
        if self.is_done(outputs) {
            self.sync(name)?;
            return Ok(StageStatus::Skipped);
        }
        self.call_hook(name, StageEvent::Start)?;
        let start = Instant::now();
        let lead = self.is_lead();
        let scratch = match &self.team {
            Some(team) if !lead => Some(self.dir.join(format!(".kiln-rank-{}", team.rank()))),
            _ => None,
        };
        let mut paths = Vec::with_capacity(outputs.len());
        for o in outputs {
            let dest = match &scratch {
                Some(s) => s.join(o),
                None => self.dir.join(o),
            };
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            remove_leftovers(&dest)?;
            paths.push((o.to_string(), partial_path(&dest)?));
        }
        let staged = StageOutputs { paths };
        if who == Who::Every || lead {
            f(&staged)?;
        }
        if let Some(s) = scratch {
            kiln_data::atomic::remove_any(&s).map_err(Error::from)?;
            self.timings
                .insert(name.to_string(), start.elapsed().as_secs_f64());
            self.sync(name)?;
            return Ok(StageStatus::Ran {
                seconds: start.elapsed().as_secs_f64(),
            });
        }
        for (o, tmp) in &staged.paths {
            if !tmp.exists() {
                return Err(Error::InvalidInput(format!(
                    "stage `{name}` finished without writing its output `{o}` ({})",
                    self.dir.display()
                ))
                .into());
            }
        }
        self.call_hook(name, StageEvent::Written)?;
        for (o, tmp) in &staged.paths {
            let dest = self.dir.join(o);
            if tmp.is_dir() {
                kiln_data::atomic::commit_dir(tmp, &dest).map_err(Error::from)?;
            } else {
                std::fs::rename(tmp, &dest).map_err(|e| Error::io(&dest, e))?;
                kiln_data::atomic::sync_parent(&dest);
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        self.record(name, seconds)?;
        tracing::info!(stage = name, dir = %self.dir.display(), seconds, "stage done");
        self.call_hook(name, StageEvent::Done)?;
        self.sync(name)?;
        Ok(StageStatus::Ran { seconds })
    }
}

/// `dir/.name.partial`: where a stage writes output `name` before it is renamed into place.
fn partial_path(dest: &Path) -> Result<PathBuf> {
    let name = dest
        .file_name()
        .ok_or_else(|| Error::InvalidInput(format!("{}: not an output name", dest.display())))?;
    Ok(dest.with_file_name(format!(".{}.partial", name.to_string_lossy())))
}

/// Removes what an interrupted attempt at writing `dest` left: its `.partial` path and any hidden
/// temporary sibling `.name.*` of it (atomic writers' temp files).
fn remove_leftovers(dest: &Path) -> Result<()> {
    let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
        return Ok(());
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            kiln_data::atomic::remove_any(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn scratch(name: &str) -> PathBuf {
        kiln_test_support::scratch(&format!("stage/{name}"))
    }

    fn write(p: &Path, text: &str) -> Result<()> {
        std::fs::write(p, text).map_err(|e| Error::io(p, e))
    }

    #[test]
    fn an_interrupted_stage_leaves_nothing_in_place_and_reruns() {
        let dir = scratch("interrupt");
        let events = Arc::new(Mutex::new(Vec::new()));
        let log = events.clone();
        let hook: StageHook = Arc::new(move |_, name, ev| {
            log.lock().unwrap().push((name.to_string(), ev));
            if name == "two" && ev == StageEvent::Written {
                return Err("killed".into());
            }
            Ok(())
        });
        let mut stages = StageRunner::open(&dir).unwrap().with_hook(Some(hook));
        let s1 = stages
            .run("one", &["a.txt"], |o| write(o.path("a.txt")?, "1"))
            .unwrap();
        assert!(matches!(s1, StageStatus::Ran { .. }));
        let err = stages
            .run("two", &["b.txt", "sub/model"], |o| {
                write(o.path("b.txt")?, "2")?;
                std::fs::create_dir_all(o.path("sub/model")?).unwrap();
                write(&o.path("sub/model")?.join("w"), "x")
            })
            .unwrap_err();
        assert!(err.to_string().contains("killed"));
        assert!(!dir.join("b.txt").exists() && !dir.join("sub/model").exists());
        assert!(
            dir.join(".b.txt.partial").exists(),
            "the killed attempt's leftovers"
        );

        // A new process: the first stage is skipped, the second reruns and cleans up.
        let mut stages = StageRunner::open(&dir).unwrap();
        assert_eq!(
            stages
                .run("one", &["a.txt"], |_| -> Result<()> { panic!("must skip") })
                .unwrap(),
            StageStatus::Skipped
        );
        stages
            .run("two", &["b.txt", "sub/model"], |o| {
                write(o.path("b.txt")?, "2")?;
                std::fs::create_dir_all(o.path("sub/model")?).unwrap();
                write(&o.path("sub/model")?.join("w"), "y")
            })
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("sub/model/w")).unwrap(),
            "y"
        );
        assert!(!dir.join(".b.txt.partial").exists());
        assert!(stages.seconds("one").is_some() && stages.seconds("two").is_some());
        assert!(
            StageRunner::open(&dir).unwrap().seconds("one").is_some(),
            "timings persist"
        );
        let ev = events.lock().unwrap().clone();
        assert_eq!(
            ev,
            [
                ("one".to_string(), StageEvent::Start),
                ("one".to_string(), StageEvent::Written),
                ("one".to_string(), StageEvent::Done),
                ("two".to_string(), StageEvent::Start),
                ("two".to_string(), StageEvent::Written),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_output_or_an_unusable_directory_is_an_error_naming_it() {
        let dir = scratch("missing");
        let mut stages = StageRunner::open(&dir).unwrap();
        let err = stages
            .run("lazy", &["never.txt"], |_| Ok::<(), Error>(()))
            .unwrap_err();
        assert!(err.to_string().contains("never.txt"), "{err}");
        let file = dir.join("plain-file");
        std::fs::write(&file, "").unwrap();
        let err = StageRunner::open(file.join("sub")).unwrap_err();
        assert!(err.to_string().contains("plain-file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Two ranks (threads) run stages: every rank runs `run`'s closure, only rank 0's outputs
    /// land and only rank 0 runs `run_lead`'s; both see the same files afterwards.
    #[test]
    fn with_a_team_rank_0_writes_and_every_rank_sees_the_outputs() {
        let dir = scratch("team");
        let ran: Vec<(usize, usize)> = std::thread::scope(|s| {
            let handles: Vec<_> = kiln_train::parallel::ThreadTeam::group(2, &dir)
                .into_iter()
                .map(|team| {
                    let dir = dir.clone();
                    s.spawn(move || {
                        let rank = kiln_train::Team::rank(team.as_ref());
                        let inside = Arc::clone(&team);
                        let mut stages = StageRunner::open(&dir).unwrap().with_team(Some(team));
                        assert_eq!(stages.is_lead(), rank == 0);
                        let (mut every, mut lead) = (0, 0);
                        // A stage with collective work inside (here a barrier): rank 0 cannot
                        // finish it alone, so every rank runs it. (A stage without any may be
                        // skipped by a rank that arrives after rank 0 committed it.)
                        stages
                            .run("every", &["every.txt"], |out| {
                                every += 1;
                                inside.barrier("collective work")?;
                                write(out.path("every.txt")?, &format!("rank {rank}"))
                            })
                            .unwrap();
                        assert_eq!(
                            std::fs::read_to_string(dir.join("every.txt")).unwrap(),
                            "rank 0"
                        );
                        stages
                            .run_lead("lead", &["lead.txt"], |out| {
                                lead += 1;
                                write(out.path("lead.txt")?, "lead")
                            })
                            .unwrap();
                        assert!(dir.join("lead.txt").exists(), "seen after the barrier");
                        // Done: skipped by both (and both still meet at the barrier).
                        let again = stages.run("every", &["every.txt"], |_| -> Result<()> {
                            panic!("a finished stage does not run again")
                        });
                        assert_eq!(again.unwrap(), StageStatus::Skipped);
                        (every, lead)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(ran, vec![(1, 1), (1, 0)]);
        assert!(
            !dir.join(".kiln-rank-1").exists(),
            "rank 1's scratch removed"
        );
        let timings: BTreeMap<String, f64> =
            kiln_data::atomic::read_json(dir.join(TIMINGS)).unwrap();
        assert_eq!(timings.len(), 2, "{timings:?}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
