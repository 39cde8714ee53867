//! kiln-test-support: what Kiln's test suites share (a dev-dependency only, never published).
//!
//! - [`fixtures`] / [`fixture`]: the committed fixtures under `tests/fixtures` (made by
//!   `scripts/`).
//! - [`scratch`]: a fresh, empty directory per test under the target directory.
//! - [`one_at_a_time`]: a process-wide turn for tests that use burn's process-wide backend RNG.
//! - [`never_panic`]: the harness of the `parsers_never_panic` tests (a time limit per case,
//!   byte and JSON mutations of valid files).
// Test support fails loudly: that is its job. The harness's items are named for what they do.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::new_without_default
)]
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub mod never_panic;

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tests/fixtures`.
pub fn fixtures() -> PathBuf {
    workspace().join("tests/fixtures")
}

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    fixtures().join(rel)
}

/// A fresh, empty directory `target/tmp/kiln-tests/<name>` (whatever an earlier run left there is
/// removed). Names must be unique across the tests of a workspace.
pub fn scratch(name: &str) -> PathBuf {
    let dir = workspace().join("target/tmp/kiln-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// A turn of this process's tests that must not run at the same time: burn's backend RNG (model
/// and adapter initialisation) is process-wide and runs seed it per stage, so runs on parallel
/// test threads would interleave their draws. Hold the guard for the whole test.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}
