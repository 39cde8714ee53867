//! [`Team`]: the processes of a distributed run as the stages see them (rank, barrier, a shared
//! directory), and [`gather`], which collects every rank's part of a sharded stage in rank order.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The processes of one run. Every rank must make the same calls in the same order.
pub trait Team: Send + Sync {
    /// This process's rank, `0..world`; rank 0 writes the shared files.
    fn rank(&self) -> usize;

    /// The number of processes.
    fn world(&self) -> usize;

    /// A directory every rank sees (the run's output directory).
    fn shared_dir(&self) -> &Path;

    /// Waits until every rank has reached the same barrier.
    ///
    /// # Errors
    /// A rank died or stopped answering ([`Error::PeerLost`]), or the engine failed.
    fn barrier(&self, what: &str) -> Result<()>;

    /// A number that grows by one at every [`gather`] (the same on every rank), so parts of
    /// different gathers never share a file.
    fn next_gather(&self) -> usize;
}

/// A counter for [`Team::next_gather`].
#[derive(Debug, Default)]
pub struct GatherCounter(AtomicUsize);

impl GatherCounter {
    /// The next number.
    pub fn next(&self) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// Every rank's `part`, concatenated in rank order (each rank gets the whole). Parts travel as
/// JSON files under the shared directory's `.kiln-gather/`, written atomically by their rank and
/// removed by rank 0 once every rank has read them.
///
/// # Errors
/// I/O and JSON errors naming the file; the barriers'.
pub fn gather<T: Serialize + DeserializeOwned>(
    team: &dyn Team,
    name: &str,
    part: &[T],
) -> Result<Vec<T>> {
    let dir = team.shared_dir().join(".kiln-gather");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let n = team.next_gather();
    let name = name.replace(['/', '\\', ' '], "_");
    let file = |rank: usize| dir.join(format!("{n:05}-{name}.rank-{rank}.json"));
    kiln_data::atomic::write_json(file(team.rank()), &part)?;
    team.barrier(&format!("gather {name}"))?;
    let mut all = Vec::new();
    for rank in 0..team.world() {
        let part: Vec<T> = kiln_data::atomic::read_json(file(rank))?;
        all.extend(part);
    }
    team.barrier(&format!("gathered {name}"))?;
    if team.rank() == 0 {
        for rank in 0..team.world() {
            let _ = std::fs::remove_file(file(rank));
        }
    }
    Ok(all)
}

/// A [`Team`] of threads of one process sharing a directory: each thread holds one member (rank)
/// of a group made by [`ThreadTeam::group`]. The in-process stand-in for a multi-process run,
/// for tests of code that runs stages or gathers on a team.
pub struct ThreadTeam {
    rank: usize,
    world: usize,
    dir: PathBuf,
    barrier: Arc<Barrier>,
    gathers: GatherCounter,
}

impl std::fmt::Debug for ThreadTeam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadTeam")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ThreadTeam {
    /// `world` members over the shared directory `dir`, rank `i` at index `i`: hand one to each
    /// thread.
    pub fn group(world: usize, dir: &Path) -> Vec<Arc<ThreadTeam>> {
        let barrier = Arc::new(Barrier::new(world.max(1)));
        (0..world)
            .map(|rank| {
                Arc::new(ThreadTeam {
                    rank,
                    world,
                    dir: dir.to_path_buf(),
                    barrier: Arc::clone(&barrier),
                    gathers: GatherCounter::default(),
                })
            })
            .collect()
    }
}

impl Team for ThreadTeam {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.world
    }
    fn shared_dir(&self) -> &Path {
        &self.dir
    }
    fn barrier(&self, _what: &str) -> Result<()> {
        self.barrier.wait();
        Ok(())
    }
    fn next_gather(&self) -> usize {
        self.gathers.next()
    }
}

#[cfg(test)]
mod tests {
    use super::ThreadTeam;

    #[test]
    fn gather_returns_every_part_in_rank_order_to_every_rank_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("kiln-gather-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let all: Vec<Vec<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = ThreadTeam::group(3, &dir)
                .into_iter()
                .map(|t| {
                    s.spawn(move || {
                        let part: Vec<u32> = (0..t.rank as u32 + 1)
                            .map(|i| 10 * t.rank as u32 + i)
                            .collect();
                        super::gather(t.as_ref(), "iter_1/x", &part).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for got in &all {
            assert_eq!(got, &vec![0, 10, 11, 20, 21, 22]);
        }
        let left = std::fs::read_dir(dir.join(".kiln-gather")).unwrap().count();
        assert_eq!(left, 0, "part files removed");
        std::fs::remove_dir_all(&dir).ok();
    }
}
