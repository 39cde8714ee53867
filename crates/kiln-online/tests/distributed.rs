//! Several processes on 127.0.0.1, launched with torchrun's environment (`RANK`, `WORLD_SIZE`,
//! `MASTER_ADDR`, `MASTER_PORT`): [`OnlineTrainer`] runs a reduced loop end to end through
//! burn-collective's orchestrator and matches the one-process runs; a rank that dies mid-stage
//! makes the other stop with one error naming it, within the peer timeout; rerunning resumes to
//! the uninterrupted summary, and no gather scratch file is left behind.
//!
//! Every rank is this test binary started again on the ignored test `rank` (the way a launcher
//! starts one process per rank).
#![cfg(test)]
#![allow(clippy::print_stderr)]

use burn::backend::{Autodiff, Flex};
use kiln_data::{Content, Message};
use kiln_online::{
    Observer, OnlineConfig, OnlineTrainer, RewardSource, StageEvent, StageHook, Summary,
};
use kiln_test_support::{fixture, scratch};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Notes on stderr (what a command-line user of a rank sees).
struct Stderr;

impl Observer for Stderr {
    fn note(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// Two iterations of 8 prompts, K = 4, the offline baseline, on the committed fixtures, with
/// `devices` peers per process.
fn trainer(devices: usize) -> OnlineTrainer<Autodiff<Flex>> {
    let prompts: Vec<Content> = (0..24)
        .map(|i| match i % 3 {
            0 => Content::Messages(vec![Message::user(format!("Question number {i}?"))]),
            _ => Content::Text(format!("Question number {i}?")),
        })
        .collect();
    let config = OnlineConfig::new()
        .with_iterations(2)
        .with_prompts_per_iteration(Some(8))
        .with_eval_prompts(4)
        .with_epochs(2)
        .with_offline(true)
        .with_generation(
            OnlineConfig::default_generation()
                .with_num_responses(4)
                .with_max_new_tokens(8),
        )
        .with_dpo_optimizer(OnlineConfig::default_optimizer(1e-3, 4));
    OnlineTrainer::new(
        fixture("sampling/tiny-chat"),
        RewardSource::bt(fixture("reward/tiny-rm")),
        prompts,
        config,
    )
    .with_devices(vec![Default::default(); devices])
    .with_observer(Arc::new(Stderr))
}

const OUT: &str = "KILN_TEST_OUT";
const DEVICES: &str = "KILN_TEST_DEVICES";
const DIE_AT: &str = "KILN_TEST_DIE_AT";

/// One rank (or a one-process run when `WORLD_SIZE` is unset), started by the tests below.
#[test]
#[ignore = "a rank of the multi-process tests, started by them"]
fn rank() {
    let out = PathBuf::from(std::env::var(OUT).expect("started by a test"));
    let devices = std::env::var(DEVICES).map_or(1, |d| d.parse().unwrap());
    // A simulated crash: this process exits at the start of the stage `dir/stage`.
    let hook: Option<StageHook> = std::env::var(DIE_AT).ok().map(|at| {
        Arc::new(move |d: &Path, s: &str, e: StageEvent| {
            let here = format!("{}/{s}", d.file_name().unwrap().to_string_lossy());
            if e == StageEvent::Start && here == at {
                eprintln!("rank dies at {here}");
                std::process::exit(3);
            }
            Ok(())
        }) as StageHook
    });
    let trainer = match hook {
        Some(hook) => trainer(devices).with_hook(hook),
        None => trainer(devices),
    };
    if let Err(e) = trainer.run(&out) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// A port `p` with `p`, `p + 1` and `p + 2` free (the orchestrator and each rank's tensors).
fn free_ports() -> u16 {
    for _ in 0..200 {
        let p = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if p < 60000 && (1..=2).all(|i| TcpListener::bind((Ipv4Addr::LOCALHOST, p + i)).is_ok()) {
            return p;
        }
    }
    panic!("no free ports");
}

/// A finished rank: its exit status and what it printed.
struct Ran {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

/// Starts this binary's `rank` test with `env`, its output going to `log.{out,err}` (files,
/// not pipes: a rank blocked on a full pipe would stall the other in a collective).
fn spawn(env: &[(&str, String)], log: &Path) -> Child {
    let file = |ext: &str| {
        let f = std::fs::File::create(log.with_extension(ext)).unwrap();
        Stdio::from(f)
    };
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "rank",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("RUST_LOG", "warn")
    .env_remove(DIE_AT)
    .stdout(file("out"))
    .stderr(file("err"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn finish(mut child: Child, log: &Path) -> Ran {
    let status = child.wait().unwrap();
    let read = |ext: &str| std::fs::read_to_string(log.with_extension(ext)).unwrap_or_default();
    Ran {
        status,
        stdout: read("out"),
        stderr: read("err"),
    }
}

/// Runs `world` ranks on `out` (the ranks in `die` exit at `die_at`) and returns each rank's
/// output, in rank order.
fn launch(out: &Path, world: usize, die: &[usize], die_at: &str, timeout: u64) -> Vec<Ran> {
    let port = free_ports();
    let logs: Vec<PathBuf> = (0..world)
        .map(|r| {
            let name = out.file_name().unwrap().to_string_lossy();
            out.with_file_name(format!("{name}-rank{r}.log"))
        })
        .collect();
    let children: Vec<Child> = (0..world)
        .map(|rank| {
            let mut env = vec![
                (OUT, out.display().to_string()),
                ("RANK", rank.to_string()),
                ("WORLD_SIZE", world.to_string()),
                ("LOCAL_WORLD_SIZE", world.to_string()),
                ("MASTER_ADDR", "127.0.0.1".to_string()),
                ("MASTER_PORT", port.to_string()),
                ("KILN_PEER_TIMEOUT", timeout.to_string()),
            ];
            if die.contains(&rank) {
                env.push((DIE_AT, die_at.to_string()));
            }
            spawn(&env, &logs[rank])
        })
        .collect();
    children
        .into_iter()
        .zip(&logs)
        .map(|(c, log)| finish(c, log))
        .collect()
}

/// One process with `devices` peers.
fn single(out: &Path, devices: usize) -> Ran {
    let log = out.with_extension("log");
    let env = [
        (OUT, out.display().to_string()),
        (DEVICES, devices.to_string()),
    ];
    finish(spawn(&env, &log), &log)
}

fn text(o: &Ran) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status, o.stdout, o.stderr
    )
}

fn summary(out: &Path) -> Summary {
    let s = std::fs::read_to_string(out.join("summary.json")).unwrap();
    serde_json::from_str(&s).unwrap()
}

/// Every number of a summary but wall times and peer counts, in order.
fn numbers(s: &Summary) -> Vec<f64> {
    let mut s = s.clone();
    s.total_seconds = 0.0;
    s.peers = 0;
    s.processes = 0;
    for e in std::iter::once(&mut s.sft)
        .chain(s.online.iter_mut())
        .chain(s.offline.as_mut())
    {
        e.seconds = 0.0;
    }
    let mut out = Vec::new();
    collect(&serde_json::to_value(&s).unwrap(), &mut out);
    out
}

fn collect(v: &serde_json::Value, out: &mut Vec<f64>) {
    match v {
        serde_json::Value::Number(n) => out.push(n.as_f64().unwrap()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect(x, out)),
        _ => {}
    }
}

#[test]
fn two_processes_run_the_loop_like_one_and_a_dead_rank_stops_the_other() {
    // Two processes of one peer each, through the orchestrator.
    let two = scratch("online-dist-two-processes");
    let outs = launch(&two, 2, &[], "", 60);
    for o in &outs {
        assert!(o.status.success(), "{}", text(o));
    }
    let s2 = summary(&two);
    assert_eq!((s2.peers, s2.processes), (2, 1 + 1), "{s2:#?}");
    assert!(
        !two.join("summary.json.rank-1").exists() && !two.join(".kiln-rank-1").exists(),
        "rank 1 writes no shared file"
    );

    // The same two peers as threads of one process: the same bits. Gradients are averaged by
    // the same sums in the same order (one tree inside the process, one ring across two), and
    // generation, annotation and reference log-probs are sharded in whole batches, so nothing
    // depends on where the peers run.
    let threads = scratch("online-dist-two-threads");
    let o = single(&threads, 2);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(numbers(&summary(&threads)), numbers(&s2));
    for f in [
        "iter_1/generations.jsonl",
        "iter_1/annotated.jsonl",
        "iter_2/pairs.jsonl",
        "offline/annotated.jsonl",
    ] {
        let read = |d: &Path| std::fs::read(d.join(f)).unwrap();
        assert_eq!(read(&two), read(&threads), "{f}");
    }

    // One peer on the whole batch: the same sampled text at iteration 1 (its policy is the SFT
    // model, trained data-parallel: weights agree to float rounding) and every number within
    // 1e-4 (relative to max(1, |x|)): the two-peer mean sums the halves' gradients in another
    // order, a 1e-7 relative difference per step that AdamW carries through 160 steps.
    let one = scratch("online-dist-one-peer");
    let o = single(&one, 1);
    assert!(o.status.success(), "{}", text(&o));
    let (a, b) = (numbers(&summary(&one)), numbers(&s2));
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
        .fold(0.0, f64::max);
    assert!(worst < 1e-4, "one peer vs two processes differ by {worst}");
    eprintln!("one peer vs two processes: largest difference {worst:.1e}");

    // Rank 1 dies as the first online DPO stage starts; rank 0, inside that stage, waits in the
    // collective, sees no heartbeat from rank 1 for the timeout (5 s) and stops with an error
    // naming it.
    let killed = scratch("online-dist-killed");
    let started = Instant::now();
    let outs = launch(&killed, 2, &[1], "iter_1/train", 5);
    let took = started.elapsed();
    assert_eq!(outs[1].status.code(), Some(3), "{}", text(&outs[1]));
    assert!(!outs[0].status.success(), "{}", text(&outs[0]));
    let err = &outs[0].stderr;
    assert!(
        err.contains("rank 1 gave no sign of life"),
        "rank 0 names the dead rank: {err}"
    );
    assert!(
        !err.contains("panicked at"),
        "one clear error, no thread panics: {err}"
    );
    assert!(took < Duration::from_secs(90), "stopped after {took:?}");
    assert!(!killed.join("summary.json").exists());
    assert!(
        killed.join("iter_1/pairs.jsonl").exists(),
        "finished stages stay"
    );

    // Rerunning both ranks resumes after the last finished stage and ends where the
    // uninterrupted run did.
    let outs = launch(&killed, 2, &[], "", 60);
    for o in &outs {
        assert!(o.status.success(), "{}", text(o));
    }
    let err = &outs[0].stderr;
    assert!(err.contains("resuming the run"), "{err}");
    assert_eq!(numbers(&summary(&killed)), numbers(&s2));
    let gather = killed.join(".kiln-gather");
    let left = std::fs::read_dir(&gather).map_or(0, |d| d.count());
    assert_eq!(left, 0, "gather scratch files do not outlive a resume");
}
