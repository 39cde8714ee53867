//! Crash-safe writes: one helper for files (JSON Lines, JSON) and one for whole directories
//! (checkpoints), each "write beside the destination, then rename over it".
//!
//! A process killed at any point leaves either the old destination or the new one, plus at most a
//! hidden temporary sibling (`.name.<pid>.tmp`), which the next write of the same destination
//! replaces. Stage outputs, checkpoints and `summary.json` all go through this module.
//!
//! ```
//! use kiln_data::atomic::{read_json, write_json};
//! let dir = std::env::temp_dir().join(format!("kiln-atomic-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).expect("a temporary directory");
//! write_json(dir.join("stats.json"), &vec![1.5, 2.5])?;
//! let back: Vec<f64> = read_json(dir.join("stats.json"))?;
//! assert_eq!(back, [1.5, 2.5]);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), kiln_data::Error>(())
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The hidden temporary sibling of `dest` used while it is being written (same directory, so the
/// final rename is atomic): `dir/.name.<pid>.<tag>`.
///
/// # Errors
/// [`Error::InvalidInput`] when `dest` has no file name.
pub fn temp_sibling(dest: &Path, tag: &str) -> Result<PathBuf> {
    let name = dest
        .file_name()
        .ok_or_else(|| Error::InvalidInput(format!("{}: not a file path", dest.display())))?;
    Ok(dest.with_file_name(format!(
        ".{}.{}.{tag}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Makes a finished rename durable (best effort: not every platform can open directories).
pub fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// A file being written beside its destination; [`AtomicFile::commit`] flushes, fsyncs and
/// renames it into place. Dropping it uncommitted deletes the temporary file.
#[derive(Debug)]
pub struct AtomicFile {
    dest: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates the temporary sibling of `dest`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the temporary file (e.g. the directory does not exist).
    pub fn create(dest: impl AsRef<Path>) -> Result<Self> {
        let dest = dest.as_ref().to_path_buf();
        let tmp = temp_sibling(&dest, "tmp")?;
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(AtomicFile {
            dest,
            tmp,
            out: Some(BufWriter::new(file)),
        })
    }

    /// The final destination.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// The temporary file being written.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// The buffered writer.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] after [`Self::commit`].
    pub fn writer(&mut self) -> Result<&mut BufWriter<File>> {
        self.out
            .as_mut()
            .ok_or_else(|| Error::InvalidInput("atomic file already committed".into()))
    }

    /// Writes all of `bytes`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the temporary file.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let tmp = self.tmp.clone();
        self.writer()?
            .write_all(bytes)
            .map_err(|e| Error::io(&tmp, e))
    }

    /// Flushes, fsyncs and renames the temporary file onto the destination.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file involved.
    pub fn commit(mut self) -> Result<()> {
        let out = self
            .out
            .take()
            .ok_or_else(|| Error::InvalidInput("atomic file already committed".into()))?;
        let file = out
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        sync_parent(&self.dest);
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `dest` atomically.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_bytes(dest: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(dest)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Writes `value` as pretty-printed JSON to `dest` atomically.
///
/// # Errors
/// [`Error::Io`] naming the file, or [`Error::InvalidInput`] when `value` cannot be serialised.
pub fn write_json<T: Serialize + ?Sized>(dest: impl AsRef<Path>, value: &T) -> Result<()> {
    let dest = dest.as_ref();
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::InvalidInput(format!("{}: cannot serialise: {e}", dest.display())))?;
    write_bytes(dest, text.as_bytes())
}

/// Reads a JSON file written by [`write_json`] (or by hand).
///
/// # Errors
/// [`Error::Io`] naming the file, or [`Error::Record`] (line 1) with serde's message and field.
pub fn read_json<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<T> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        Error::Record {
            path: path.to_path_buf(),
            line: e.inner().line(),
            field: (field != ".").then_some(field),
            message: e.into_inner().to_string(),
        }
    })
}

/// Fills a fresh temporary sibling directory of `dest` with `fill`, then swaps it into place: an
/// existing `dest` is moved aside first and removed only after the rename, so a crash leaves either
/// the old or the new directory (plus temporary siblings the next call removes).
///
/// # Errors
/// `fill`'s error (the temporary directory is removed), or [`Error::Io`] naming the path.
pub fn replace_dir<E: From<Error>>(
    dest: impl AsRef<Path>,
    fill: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let dest = dest.as_ref();
    let tmp = temp_sibling(dest, "tmp")?;
    remove_any(&tmp)?;
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    commit_dir(&tmp, dest)?;
    Ok(())
}

/// Moves a finished directory `tmp` onto `dest` (the old `dest`, if any, is removed after the
/// rename).
///
/// # Errors
/// [`Error::Io`] naming the path.
pub fn commit_dir(tmp: &Path, dest: &Path) -> Result<()> {
    let old = temp_sibling(dest, "old")?;
    remove_any(&old)?;
    if dest.exists() {
        std::fs::rename(dest, &old).map_err(|e| Error::io(dest, e))?;
    }
    std::fs::rename(tmp, dest).map_err(|e| Error::io(dest, e))?;
    sync_parent(dest);
    remove_any(&old)
}

/// Removes a file or directory if it exists.
///
/// # Errors
/// [`Error::Io`] naming the path.
pub fn remove_any(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).map_err(|e| Error::io(path, e)),
        Ok(_) => std::fs::remove_file(path).map_err(|e| Error::io(path, e)),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        kiln_test_support::scratch(&format!("atomic/{name}"))
    }

    #[test]
    fn files_appear_only_on_commit() {
        let d = scratch("file");
        let dest = d.join("a.json");
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"{\"x\": 1}").unwrap();
        assert!(!dest.exists() && f.temp_path().exists());
        let tmp = f.temp_path().to_path_buf();
        drop(f);
        assert!(
            !tmp.exists() && !dest.exists(),
            "dropped uncommitted: nothing left"
        );
        write_json(&dest, &serde_json::json!({"x": 2})).unwrap();
        let v: serde_json::Value = read_json(&dest).unwrap();
        assert_eq!(v["x"], 2);
        let err = read_json::<Vec<u32>>(&dest).unwrap_err().to_string();
        assert!(err.contains("a.json"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn directories_are_swapped_whole_and_failures_leave_the_old_one() {
        let d = scratch("dir");
        let dest = d.join("ckpt");
        replace_dir::<Error>(&dest, |p| {
            std::fs::write(p.join("v"), "1").map_err(|e| Error::io(p, e))
        })
        .unwrap();
        let failed = replace_dir::<Error>(&dest, |p| {
            std::fs::write(p.join("v"), "2").map_err(|e| Error::io(p, e))?;
            Err(Error::InvalidInput("killed".into()))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(dest.join("v")).unwrap(), "1");
        replace_dir::<Error>(&dest, |p| {
            std::fs::write(p.join("v"), "3").map_err(|e| Error::io(p, e))
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("v")).unwrap(), "3");
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary siblings left behind");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_path() {
        let err = write_json("/nonexistent-kiln-dir/x.json", &1).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-kiln-dir/"), "{err}");
    }
}
