//! [`Cluster`]: this process's peers in a multi-process, multi-node run, joined through
//! burn-collective's global orchestrator (websocket, started by rank 0 on `MASTER_PORT`).
//!
//! Each process is one burn-collective node with the same number of local devices (peers as
//! threads); peer `rank * devices + i` is global. The peers register once, when the cluster is
//! joined, and stay registered until [`Cluster::finish`]: every training stage reuses them (the
//! orchestrator of burn-collective 0.21 has one session per registration, and re-registering
//! between stages races). Every collective call goes through the [`Watchdog`], so a rank that
//! dies stops the others with an error naming it.

use std::net::{Ipv4Addr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use burn::collective::{
    CollectiveConfig, PeerId, ReduceOperation, all_reduce, finish_collective, register,
    reset_collective,
};
use burn::module::AutodiffModule;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

use super::collective::{CollectiveSync, collective_error, run_peers};
use super::launch::Launch;
use super::team::{GatherCounter, Team};
use super::watchdog::Watchdog;
use crate::error::{Error, Result};
use crate::optim::TrainConfig;
use crate::train_loop::TrainLoop;

/// This process's part of a multi-process run (see the module docs).
pub struct Cluster<B: AutodiffBackend> {
    launch: Launch,
    devices: Vec<B::Device>,
    shared: PathBuf,
    watch: Arc<Watchdog>,
    gathers: GatherCounter,
}

impl<B: AutodiffBackend> std::fmt::Debug for Cluster<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("launch", &self.launch)
            .field("devices", &self.devices.len())
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

type Inner<B> = <B as AutodiffBackend>::InnerBackend;

fn address(url: &str) -> Result<burn_communication::Address> {
    url.parse()
        .map_err(|e| Error::InvalidConfig(format!("address {url}: {e}")))
}

impl<B: AutodiffBackend> Cluster<B> {
    /// Joins the run `launch` describes with one peer per device in `devices` (every rank must
    /// bring as many), sharing `shared_dir` (the run's output directory, seen by every rank).
    /// Rank 0 starts the orchestrator; the others wait for it. Blocks until every rank has
    /// joined, at most `launch.timeout`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] without devices; [`Error::Collective`] when the orchestrator's
    /// port is taken or the ranks do not all join in time; [`Error::PeerLost`].
    pub fn join(launch: Launch, devices: Vec<B::Device>, shared_dir: &Path) -> Result<Self> {
        if devices.is_empty() {
            return Err(Error::InvalidConfig("a cluster rank needs a device".into()));
        }
        quiet_transport_panics();
        std::fs::create_dir_all(shared_dir).map_err(|e| Error::io(shared_dir, e))?;
        let watch = Arc::new(Watchdog::start(
            shared_dir,
            launch.rank,
            launch.world,
            launch.timeout,
        )?);
        if launch.rank == 0 {
            start_orchestrator(launch.master_port)?;
        } else {
            wait_for_orchestrator(&launch, &watch)?;
        }
        reset_collective::<Inner<B>>();
        let n = devices.len();
        let config = CollectiveConfig::default()
            .with_num_devices(n)
            .with_num_nodes(launch.world as u32)
            .with_global_address(address(&launch.orchestrator_url())?)
            .with_node_address(address(&launch.node_url())?)
            .with_data_service_port(launch.data_port());
        let first = launch.rank * n;
        let join = move |peer: PeerId, device: B::Device| {
            register::<Inner<B>>(peer, device, config.clone()).map_err(collective_error)
        };
        every_local_peer::<B>(
            &watch,
            "joining the run",
            Some(launch.timeout),
            &devices,
            first,
            join,
        )?;
        tracing::info!(
            rank = launch.rank,
            world = launch.world,
            devices = n,
            "joined the run"
        );
        Ok(Self {
            shared: shared_dir.to_path_buf(),
            launch,
            devices,
            watch,
            gathers: GatherCounter::default(),
        })
    }

    /// The launch this process joined with.
    pub fn launch(&self) -> &Launch {
        &self.launch
    }

    /// This process's devices (one peer each).
    pub fn devices(&self) -> &[B::Device] {
        &self.devices
    }

    /// Peers over all processes.
    pub fn peers(&self) -> usize {
        self.launch.world * self.devices.len()
    }

    fn peer(&self, local: usize) -> usize {
        self.launch.rank * self.devices.len() + local
    }

    /// [`super::data_parallel`] over every peer of every process: each process runs `run` on
    /// its devices, on its shards of every micro-batch; all peers end with the same weights.
    /// Every rank must call it at the same point with the same configuration and a model loaded
    /// from the same files.
    ///
    /// # Errors
    /// As [`super::data_parallel`]; [`Error::PeerLost`].
    pub fn data_parallel<M, R, F>(
        &self,
        model: M,
        config: &TrainConfig,
        run: F,
    ) -> Result<(M, Vec<R>)>
    where
        M: AutodiffModule<B>,
        R: Send,
        F: Fn(&mut TrainLoop<B, M>) -> Result<R> + Sync,
    {
        let world = self.peers();
        run_peers(
            model,
            config,
            &self.devices,
            |local, device| {
                Ok(CollectiveSync::registered(
                    self.peer(local),
                    world,
                    device,
                    Arc::clone(&self.watch),
                ))
            },
            run,
        )
    }

    /// Leaves the run: a last barrier, the peers unregister, and rank 0 keeps the orchestrator
    /// up until the others are gone. Call it once the run's work is done; dropping a cluster
    /// without it (on an error) only stops the heartbeat.
    ///
    /// # Errors
    /// The barrier's.
    pub fn finish(self) -> Result<()> {
        self.barrier("leaving the run")?;
        let peers: Vec<PeerId> = (0..self.devices.len())
            .map(|i| PeerId::from(self.peer(i)))
            .collect();
        let leaving = move || -> Result<()> {
            for peer in peers {
                finish_collective::<Inner<B>>(peer).map_err(collective_error)?;
            }
            Ok(())
        };
        if let Err(e) = self
            .watch
            .guarded("leaving", Some(Duration::from_secs(10)), leaving)
        {
            tracing::warn!(error = %e, "leaving the collective");
        }
        self.watch.leave();
        if self.launch.rank == 0 {
            self.watch.wait_for_others_to_leave();
        }
        Ok(())
    }
}

impl<B: AutodiffBackend> Team for Cluster<B> {
    fn rank(&self) -> usize {
        self.launch.rank
    }

    fn world(&self) -> usize {
        self.launch.world
    }

    fn shared_dir(&self) -> &Path {
        &self.shared
    }

    fn barrier(&self, what: &str) -> Result<()> {
        let peers = self.peers();
        let meet = move |peer: PeerId, device: B::Device| {
            // One element per peer: the ring all-reduce across nodes needs a slice each.
            let t = Tensor::<Inner<B>, 1>::zeros([peers], &device);
            all_reduce::<Inner<B>>(peer, t.into_primitive().tensor(), ReduceOperation::Sum)
                .map(|_| ())
                .map_err(collective_error)
        };
        let first = self.peer(0);
        every_local_peer::<B>(&self.watch, what, None, &self.devices, first, meet)
    }

    fn next_gather(&self) -> usize {
        self.gathers.next()
    }
}

/// Calls `op(peer, device)` for every local peer at once (peers `first..first + devices.len()`,
/// each on its own thread: a collective call returns only when every peer has made it) and waits
/// for all of them under the watchdog.
fn every_local_peer<B: AutodiffBackend>(
    watch: &Watchdog,
    what: &str,
    deadline: Option<Duration>,
    devices: &[B::Device],
    first: usize,
    op: impl Fn(PeerId, B::Device) -> Result<()> + Clone + Send + 'static,
) -> Result<()> {
    let (tx, rx) = channel();
    for (i, device) in devices.iter().enumerate() {
        let (op, device, tx) = (op.clone(), device.clone(), tx.clone());
        std::thread::spawn(move || {
            let _ = tx.send(op(PeerId::from(first + i), device));
        });
    }
    drop(tx);
    let n = devices.len();
    let task = what.to_string();
    watch.guarded(what, deadline, move || {
        for _ in 0..n {
            rx.recv()
                .map_err(|_| Error::PeerPanicked { what: task.clone() })??;
        }
        Ok(())
    })
}

/// When a rank dies, burn-collective's and burn-communication's threads panic on the broken
/// connections; the survivors then stop with one error naming the dead rank (the watchdog's).
/// Their panic messages go to `tracing` (debug) instead of stderr, so that error is what a user
/// reads; panics anywhere else are printed as before.
fn quiet_transport_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info.location().map_or("", |l| l.file());
            if ["burn-collective", "burn-communication", "tokio"]
                .iter()
                .any(|c| file.contains(c))
            {
                tracing::debug!(%info, "transport thread panicked");
            } else {
                previous(info);
            }
        }));
    });
}

/// Starts burn-collective's orchestrator on `port` (all interfaces) on a thread of its own that
/// lives as long as the process.
fn start_orchestrator(port: u16) -> Result<()> {
    drop(
        TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).map_err(|e| {
            Error::Collective(format!(
                "rank 0 cannot listen on MASTER_PORT {port} for the orchestrator: {e}"
            ))
        })?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::Collective(format!("the orchestrator's runtime: {e}")))?;
    std::thread::spawn(move || {
        runtime.block_on(burn_collective::start_global_orchestrator(port));
    });
    Ok(())
}

/// Waits until rank 0's orchestrator accepts connections (burn-collective's own client retries
/// noisily), at most the timeout.
fn wait_for_orchestrator(launch: &Launch, watch: &Watchdog) -> Result<()> {
    let start = Instant::now();
    loop {
        let addrs = (launch.master_addr.as_str(), launch.master_port)
            .to_socket_addrs()
            .map_err(|e| {
                Error::InvalidConfig(format!("MASTER_ADDR={}: {e}", launch.master_addr))
            })?;
        for addr in addrs {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return Ok(());
            }
        }
        watch.check()?;
        if start.elapsed() > launch.timeout {
            return Err(Error::Collective(format!(
                "no orchestrator at {} after {:.0} s: is rank 0 started?",
                launch.orchestrator_url(),
                launch.timeout.as_secs_f64()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
