//! Probe: consecutive barriers across processes.
#![allow(clippy::print_stderr, missing_docs)]
use kiln_train::parallel::{Cluster, Launch, Team};
type B = burn::backend::Autodiff<burn::backend::Flex>;
fn main() {
    let launch = Launch::from_env().unwrap().unwrap();
    let rank = launch.rank;
    let c = Cluster::<B>::join(
        launch,
        vec![Default::default()],
        std::path::Path::new("/tmp/probe"),
    )
    .unwrap();
    eprintln!("rank {rank} joined");
    for i in 0..5 {
        c.barrier(&format!("b{i}")).unwrap();
        eprintln!("rank {rank} passed barrier {i}");
    }
    c.finish().unwrap();
    eprintln!("rank {rank} done");
}
