//! Five consecutive barriers between processes through burn-collective's orchestrator: the
//! reproduction of the multi-node sync bug `vendor/burn-collective/KILN-PATCH.md` fixes (with the
//! published 0.21.0 the second barrier hangs). Run two ranks:
//!
//! ```text
//! cargo build --release -p kiln-train --example cluster_probe
//! for r in 0 1; do RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29641 \
//!     KILN_PEER_TIMEOUT=10 target/release/examples/cluster_probe & done; wait
//! ```
// A measurement binary: it fails loudly on a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::print_stderr)]

use kiln_train::parallel::{Cluster, Launch, Team};

type B = burn::backend::Autodiff<burn::backend::Flex>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let launch = Launch::from_env()?.ok_or("set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT")?;
    let rank = launch.rank;
    let shared = std::env::temp_dir().join("kiln-cluster-probe");
    let cluster = Cluster::<B>::join(launch, vec![Default::default()], &shared)?;
    eprintln!("rank {rank} joined");
    for i in 0..5 {
        cluster.barrier(&format!("barrier {i}"))?;
        eprintln!("rank {rank} passed barrier {i}");
    }
    cluster.finish()?;
    eprintln!("rank {rank} done");
    Ok(())
}
