//! [`Launch`]: a process's place in a multi-process run, read from torchrun's environment
//! (`RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), so `torchrun`, SLURM
//! scripts and Kubernetes jobs start Kiln without a wrapper.

use std::net::{Ipv4Addr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use crate::error::{Error, Result};

/// The default for [`Launch::timeout`]: how long a rank may stay silent before the others stop.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(120);

/// One process of a multi-process run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// This process's rank (`RANK`), `0..world`. Rank 0 runs the orchestrator and writes the
    /// shared files.
    pub rank: usize,
    /// The number of processes (`WORLD_SIZE`).
    pub world: usize,
    /// Processes on this machine (`LOCAL_WORLD_SIZE`, 1 when unset).
    pub local_world: usize,
    /// Host of rank 0, where the orchestrator listens (`MASTER_ADDR`).
    pub master_addr: String,
    /// The orchestrator's port (`MASTER_PORT`); rank `r` serves its tensors on
    /// `MASTER_PORT + 1 + r`.
    pub master_port: u16,
    /// The host other ranks reach this one at: `KILN_NODE_ADDR`, else the address this machine
    /// uses to reach `MASTER_ADDR`.
    pub node_host: String,
    /// How long a rank may show no sign of life (`KILN_PEER_TIMEOUT`, seconds; default 120)
    /// before the others stop with an error naming it.
    pub timeout: Duration,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T> {
    value.trim().parse().map_err(|_| {
        Error::InvalidConfig(format!(
            "environment variable {name}={value:?} is not a number"
        ))
    })
}

impl Launch {
    /// The launch described by the environment; `None` when `WORLD_SIZE` is unset or 1 (one
    /// process).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the variable when one is missing or malformed, or `RANK`
    /// is not below `WORLD_SIZE`.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(var)
    }

    /// As [`Self::from_env`], reading variables through `get`.
    ///
    /// # Errors
    /// As [`Self::from_env`].
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(world) = get("WORLD_SIZE") else {
            // A partial launch environment would otherwise run as a lone process, silently.
            if let Some(rank) = get("RANK") {
                return Err(Error::InvalidConfig(format!(
                    "RANK={rank} is set but WORLD_SIZE is not (torchrun sets RANK, WORLD_SIZE, \
                     MASTER_ADDR and MASTER_PORT; unset RANK to run one process)"
                )));
            }
            return Ok(None);
        };
        let world: usize = number("WORLD_SIZE", &world)?;
        if world == 0 {
            return Err(Error::InvalidConfig(
                "WORLD_SIZE=0: a run has at least one process".into(),
            ));
        }
        if world == 1 {
            if let Some(rank) = get("RANK") {
                let rank: usize = number("RANK", &rank)?;
                if rank != 0 {
                    return Err(Error::InvalidConfig(format!(
                        "RANK={rank} is not below WORLD_SIZE=1"
                    )));
                }
            }
            return Ok(None);
        }
        let need = |name: &str| {
            get(name).ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "WORLD_SIZE={world} but {name} is not set (torchrun sets RANK, WORLD_SIZE, \
                     MASTER_ADDR and MASTER_PORT)"
                ))
            })
        };
        let rank: usize = number("RANK", &need("RANK")?)?;
        if rank >= world {
            return Err(Error::InvalidConfig(format!(
                "RANK={rank} is not below WORLD_SIZE={world}"
            )));
        }
        let master_addr = need("MASTER_ADDR")?;
        let master_port: u16 = number("MASTER_PORT", &need("MASTER_PORT")?)?;
        if usize::from(master_port) + world >= usize::from(u16::MAX) {
            return Err(Error::InvalidConfig(format!(
                "MASTER_PORT={master_port}: ranks serve on MASTER_PORT + 1 + RANK, which must stay \
                 below 65535"
            )));
        }
        let local_world = match get("LOCAL_WORLD_SIZE") {
            Some(v) => number("LOCAL_WORLD_SIZE", &v)?,
            None => 1,
        };
        if local_world == 0 || local_world > world {
            return Err(Error::InvalidConfig(format!(
                "LOCAL_WORLD_SIZE={local_world} must lie in 1..=WORLD_SIZE ({world})"
            )));
        }
        let timeout = match get("KILN_PEER_TIMEOUT") {
            Some(v) => peer_timeout(&v)?,
            None => DEFAULT_PEER_TIMEOUT,
        };
        let node_host = match get("KILN_NODE_ADDR") {
            Some(host) => host,
            None => route_to(&master_addr, master_port)?,
        };
        Ok(Some(Launch {
            rank,
            world,
            local_world,
            master_addr,
            master_port,
            node_host,
            timeout,
        }))
    }

    /// The orchestrator's websocket address.
    pub fn orchestrator_url(&self) -> String {
        format!("ws://{}:{}", self.master_addr, self.master_port)
    }

    /// The port this rank serves its tensors on.
    pub fn data_port(&self) -> u16 {
        self.master_port + 1 + self.rank as u16
    }

    /// This rank's websocket address, as other ranks reach it.
    pub fn node_url(&self) -> String {
        format!("ws://{}:{}", self.node_host, self.data_port())
    }
}

/// `KILN_PEER_TIMEOUT` in seconds: a finite number from 1 to a week.
fn peer_timeout(value: &str) -> Result<Duration> {
    let secs: f64 = number("KILN_PEER_TIMEOUT", value)?;
    if !(1.0..=604_800.0).contains(&secs) {
        return Err(Error::InvalidConfig(format!(
            "environment variable KILN_PEER_TIMEOUT={value:?}: expected seconds from 1 to 604800"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The local address this machine uses to reach `host` (no packet is sent: a UDP socket is only
/// connected); loopback for a loopback `host`.
fn route_to(host: &str, port: u16) -> Result<String> {
    let target = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.find(|a| a.is_ipv4()))
        .ok_or_else(|| {
            Error::InvalidConfig(format!(
                "MASTER_ADDR={host:?} does not resolve to an IPv4 address"
            ))
        })?;
    if target.ip().is_loopback() {
        return Ok(Ipv4Addr::LOCALHOST.to_string());
    }
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect(target).map(|()| s))
        .and_then(|s| s.local_addr())
        .map_err(|e| {
            Error::InvalidConfig(format!(
                "no route to MASTER_ADDR={host} ({e}); set KILN_NODE_ADDR to this machine's address"
            ))
        })?;
    Ok(socket.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn torchrun_variables_make_a_launch_and_one_process_makes_none() {
        let env = [
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29500"),
            ("KILN_PEER_TIMEOUT", "7"),
        ];
        let l = Launch::from_vars(vars(&env)).unwrap().unwrap();
        assert_eq!((l.rank, l.world, l.local_world), (1, 2, 1));
        assert_eq!(l.orchestrator_url(), "ws://127.0.0.1:29500");
        assert_eq!(l.node_url(), "ws://127.0.0.1:29502");
        assert_eq!(l.timeout, Duration::from_secs(7));
        assert!(Launch::from_vars(vars(&[])).unwrap().is_none());
        assert!(
            Launch::from_vars(vars(&[("WORLD_SIZE", "1")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_missing_or_bad_variable_is_named() {
        let e = Launch::from_vars(vars(&[("WORLD_SIZE", "2"), ("RANK", "0")])).unwrap_err();
        assert!(e.to_string().contains("MASTER_ADDR"), "{e}");
        let e = Launch::from_vars(vars(&[("WORLD_SIZE", "two")])).unwrap_err();
        assert!(e.to_string().contains("WORLD_SIZE"), "{e}");
        let env = [
            ("RANK", "2"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29500"),
        ];
        let e = Launch::from_vars(vars(&env)).unwrap_err();
        assert!(e.to_string().contains("RANK=2"), "{e}");
        // Partial environments and values out of range are named, never a panic.
        let e = Launch::from_vars(vars(&[("RANK", "1")])).unwrap_err();
        assert!(e.to_string().contains("WORLD_SIZE"), "{e}");
        let e = Launch::from_vars(vars(&[("WORLD_SIZE", "0")])).unwrap_err();
        assert!(e.to_string().contains("WORLD_SIZE=0"), "{e}");
        let e = Launch::from_vars(vars(&[("WORLD_SIZE", "1"), ("RANK", "1")])).unwrap_err();
        assert!(e.to_string().contains("RANK=1"), "{e}");
        for bad in ["inf", "NaN", "-3", "0", "1e300"] {
            let env = [
                ("RANK", "0"),
                ("WORLD_SIZE", "2"),
                ("MASTER_ADDR", "127.0.0.1"),
                ("MASTER_PORT", "29500"),
                ("KILN_PEER_TIMEOUT", bad),
            ];
            let e = Launch::from_vars(vars(&env)).unwrap_err();
            assert!(e.to_string().contains("KILN_PEER_TIMEOUT"), "{bad}: {e}");
        }
        let env = [
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_WORLD_SIZE", "3"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29500"),
        ];
        let e = Launch::from_vars(vars(&env)).unwrap_err();
        assert!(e.to_string().contains("LOCAL_WORLD_SIZE"), "{e}");
    }
}
