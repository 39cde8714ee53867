//! The built-in task's shipped starting point: the SFT policy and the proxy reward model as small
//! Hugging Face directories under `assets/builtin/`, made by `iterative_dpo --setup-only --out
//! assets/builtin` and described by `assets/builtin/manifest.json` (the settings they were trained
//! with and a SHA-256 digest of every file). A default run copies them into its output directory
//! the way a user starts from a published SFT model and reward model; `--train-setup`, or any
//! setup setting that differs from the manifest's, trains them in the run instead.

use super::Res;
use super::config::{LoopConfig, Mode};
use kiln::reward::AnnotatorKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The directories a setup ships.
pub const SHIPPED_DIRS: [&str; 2] = ["sft", "reward_model"];

/// `assets/builtin/manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// How to make the files again.
    pub command: String,
    /// The setup settings they were trained with ([`setup_of`]).
    pub setup: BTreeMap<String, Value>,
    /// SHA-256 (hex) of every shipped file, by path inside the directory.
    pub files: BTreeMap<String, String>,
    /// The CPU they were trained on (floating-point results depend on its vector units).
    pub machine: String,
}

/// Where the shipped setup lives.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/builtin")
}

/// The settings the SFT policy and the reward model depend on, under their flag names
/// (`--devices` is not one: it only changes how they are trained, not what from).
pub fn setup_of(cfg: &LoopConfig) -> Res<BTreeMap<String, Value>> {
    let (t, o) = (&cfg.task, &cfg.online);
    let all = serde_json::json!({
        "setup_seed": t.setup_seed,
        "hidden_size": t.hidden_size,
        "layers": t.layers,
        "train_phrasings": t.train_phrasings,
        "sft_examples": t.sft_examples,
        "sft_steps": t.sft_steps,
        "sft_lr": t.sft_lr,
        "rm_pairs": t.rm_pairs,
        "rm_steps": t.rm_steps,
        "rm_lr": t.rm_lr,
        "label_noise": t.label_noise,
        "batch_size": t.batch_size,
        "max_prompt_tokens": o.truncation.max_prompt_len,
        "max_total_tokens": o.truncation.max_total_len,
        "max_new_tokens": o.generation.max_new_tokens,
        "annotator": t.annotator,
    });
    let Value::Object(all) = all else {
        return Err("the setup is not a JSON object".into());
    };
    Ok(all.into_iter().collect())
}

/// SHA-256 of a file, in hex.
pub fn sha256(path: &Path) -> Res<String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// Every file under `root/name` for each shipped directory, as paths relative to `root`.
fn files(root: &Path) -> Res<Vec<String>> {
    let mut out = Vec::new();
    for d in SHIPPED_DIRS {
        let dir = root.join(d);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        names.sort();
        out.extend(names.into_iter().map(|n| format!("{d}/{n}")));
    }
    Ok(out)
}

/// The manifest of the setup trained in `root` with `cfg`.
pub fn manifest_of(root: &Path, cfg: &LoopConfig) -> Res<Manifest> {
    let mut digests = BTreeMap::new();
    for f in files(root)? {
        digests.insert(f.clone(), sha256(&root.join(&f))?);
    }
    Ok(Manifest {
        command: "cargo run --release --example iterative_dpo -- --setup-only --out assets/builtin"
            .into(),
        setup: setup_of(cfg)?,
        files: digests,
        machine: machine(),
    })
}

/// The CPU's model name (`/proc/cpuinfo`), with AVX-512 when it has it.
fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = (info.lines().find(|l| l.starts_with("model name")))
        .and_then(|l| l.split(':').nth(1))
        .map_or(std::env::consts::ARCH, str::trim);
    let avx512 = if info.contains("avx512f") {
        ", AVX-512"
    } else {
        ""
    };
    format!("{cpu}{avx512}")
}

/// A `--setup-only` directory and its manifest.
#[derive(Debug, Clone)]
pub struct Shipped {
    /// The directory (`assets/builtin`, or `--setup-from`).
    pub dir: PathBuf,
    /// Its `manifest.json`.
    pub manifest: Manifest,
}

/// The shipped setup (or `--setup-from`'s), when this run can start from it: the built-in task
/// with a Bradley-Terry reward model, no `--train-setup`, and the manifest's settings. `None`
/// (with a note saying why) otherwise.
///
/// # Errors
/// An unreadable manifest.
pub fn for_run(cfg: &LoopConfig) -> Res<Option<Shipped>> {
    let t = &cfg.task;
    if t.train_setup || cfg.mode() != Mode::Builtin || t.annotator != AnnotatorKind::Bt {
        return Ok(None);
    }
    let dir = t.setup_from.clone().unwrap_or_else(dir);
    let manifest: Manifest = kiln::data::atomic::read_json(dir.join("manifest.json"))?;
    let mine = setup_of(cfg)?;
    if let Some((k, v)) = mine.iter().find(|(k, v)| manifest.setup.get(*k) != Some(v)) {
        eprintln!(
            "   the SFT policy and reward model in {} were trained with {k} = {}, this run has \
             {v}: training them in this run",
            dir.display(),
            manifest.setup.get(k).unwrap_or(&Value::Null)
        );
        return Ok(None);
    }
    Ok(Some(Shipped { dir, manifest }))
}

/// Copies the directory `name` (`sft` or `reward_model`) of `shipped` to `dest`, checking every
/// file against the manifest's digest.
///
/// # Errors
/// A missing file, or one whose digest differs from the manifest's (named).
pub fn install(shipped: &Shipped, name: &str, dest: &Path) -> Res<()> {
    let prefix = format!("{name}/");
    let files: Vec<_> = (shipped.manifest.files.iter())
        .filter(|(f, _)| f.starts_with(&prefix))
        .collect();
    if files.is_empty() {
        return Err(format!(
            "{}: lists no file under {prefix}; regenerate it (`{}`) or run with --train-setup",
            shipped.dir.join("manifest.json").display(),
            shipped.manifest.command
        )
        .into());
    }
    std::fs::create_dir_all(dest)?;
    for (file, digest) in files {
        let from = shipped.dir.join(file);
        let got = sha256(&from)?;
        if &got != digest {
            return Err(format!(
                "{}: SHA-256 {got} differs from the manifest's {digest}; regenerate it (`{}`) or \
                 run with --train-setup",
                from.display(),
                shipped.manifest.command
            )
            .into());
        }
        let to = dest.join(&file[prefix.len()..]);
        std::fs::copy(&from, &to)
            .map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))?;
    }
    Ok(())
}
