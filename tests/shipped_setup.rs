//! The built-in task's shipped starting point (`assets/builtin/`): its files match the committed
//! digest manifest, the default configuration starts from it, and the code that makes it is
//! deterministic (two builds, the same bytes), so the shipped files cannot silently drift from
//! what `iterative_dpo --setup-only` produces.

#[path = "../examples/iterative_dpo.rs"]
#[allow(dead_code, unused_imports)]
mod iterative_dpo;

use iterative_dpo::shipped::{self, Manifest};
use iterative_dpo::{LoopConfig, setup_only};
use std::path::{Path, PathBuf};

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
    let online_seed = LoopConfig {
        seed: 3,
        devices: 2,
        ..LoopConfig::default()
    };
    assert!(
        shipped::for_run(&online_seed).unwrap().is_some(),
        "--seed and --devices do not change what the setup is"
    );
    let setup_seed = LoopConfig {
        setup_seed: 3,
        ..LoopConfig::default()
    };
    assert!(shipped::for_run(&setup_seed).unwrap().is_none());
    let retrain = LoopConfig {
        train_setup: true,
        ..LoopConfig::default()
    };
    assert!(shipped::for_run(&retrain).unwrap().is_none());
    let other = LoopConfig {
        hidden_size: 32,
        ..LoopConfig::default()
    };
    assert!(
        shipped::for_run(&other).unwrap().is_none(),
        "another shape trains its own"
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A reduced setup (a few seconds): the same code path as the shipped one.
fn reduced(out: PathBuf) -> LoopConfig {
    LoopConfig {
        out,
        hidden_size: 32,
        layers: 1,
        sft_examples: 300,
        sft_steps: 60,
        rm_pairs: 200,
        rm_steps: 30,
        batch_size: 16,
        ..LoopConfig::default()
    }
}

#[test]
fn the_setup_is_made_bit_for_bit_again() {
    let (a, b) = (scratch("setup-a"), scratch("setup-b"));
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
