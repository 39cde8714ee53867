//! The built-in task's shipped starting point (`assets/builtin/`): its files match the committed
//! digest manifest, the default configuration starts from it, and the code that makes it is
//! deterministic (two builds, the same bytes), so the shipped files cannot silently drift from
//! what `iterative_dpo --setup-only` produces.
#![cfg(test)]

#[path = "../examples/iterative_dpo.rs"]
#[allow(dead_code, unused_imports)]
mod iterative_dpo;

use iterative_dpo::shipped::{self, Manifest};
use iterative_dpo::{LoopConfig, setup_only};
use std::path::PathBuf;

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(shipped::dir().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn shipped_files_match_the_manifest_and_the_default_run_uses_them() {
    let m = manifest();
    assert_eq!(m.files.len(), 4, "{:?}", m.files.keys());
    for (file, digest) in &m.files {
        let got = shipped::sha256(&shipped::dir().join(file)).unwrap();
        assert_eq!(
            &got, digest,
            "{file} differs from assets/builtin/manifest.json"
        );
    }
    let size: u64 = m
        .files
        .keys()
        .map(|f| std::fs::metadata(shipped::dir().join(f)).unwrap().len())
        .sum();
    assert!(size < 20 << 20, "the shipped setup is {size} bytes");
    assert_eq!(
        shipped::setup_of(&LoopConfig::default()).unwrap(),
        m.setup,
        "the default configuration's setup settings are the shipped setup's"
    );
    assert!(shipped::for_run(&LoopConfig::default()).unwrap().is_some());
    let mut online_seed = LoopConfig::default();
    online_seed.online.seed = 3;
    online_seed.task.devices = 2;
    assert!(
        shipped::for_run(&online_seed).unwrap().is_some(),
        "--seed and --devices do not change what the setup is"
    );
    let mut setup_seed = LoopConfig::default();
    setup_seed.task.setup_seed = 3;
    assert!(shipped::for_run(&setup_seed).unwrap().is_none());
    let mut retrain = LoopConfig::default();
    retrain.task.train_setup = true;
    assert!(shipped::for_run(&retrain).unwrap().is_none());
    let mut other = LoopConfig::default();
    other.task.hidden_size = 32;
    assert!(
        shipped::for_run(&other).unwrap().is_none(),
        "another shape trains its own"
    );
}

/// A reduced setup (a few seconds): the same code path as the shipped one.
fn reduced(out: PathBuf) -> LoopConfig {
    let mut c = LoopConfig::default();
    let t = &mut c.task;
    (t.out, t.hidden_size, t.layers, t.batch_size) = (out, 32, 1, 16);
    (t.sft_examples, t.sft_steps, t.rm_pairs, t.rm_steps) = (300, 60, 200, 30);
    c
}

#[test]
fn the_setup_is_made_bit_for_bit_again() {
    let (a, b) = (
        kiln_test_support::scratch("setup-a"),
        kiln_test_support::scratch("setup-b"),
    );
    let ma = setup_only(&reduced(a.clone())).unwrap();
    let mb = setup_only(&reduced(b.clone())).unwrap();
    assert_eq!(ma.files, mb.files, "two builds, different bytes");
    assert_eq!(ma.files.len(), 4);
    for f in ma.files.keys() {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    let written: Manifest =
        serde_json::from_str(&std::fs::read_to_string(a.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(written, ma);
    assert_eq!(written.setup["hidden_size"], 32);
}
