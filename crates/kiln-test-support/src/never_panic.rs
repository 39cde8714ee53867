//! The never-panic harness shared by the `parsers_never_panic` tests of kiln-data, kiln-model and
//! the facade: scratch directories, a per-case time limit, and mutations of bytes and of JSON
//! values. Each test brings its own dictionaries (the byte strings to splice in, the JSON texts to
//! put in place of values) and its fixtures.

use std::panic::resume_unwind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::Value;

/// Longest a single case may run (a debug build on a loaded 2-core CI machine; cases take
/// milliseconds).
pub const LIMIT: Duration = Duration::from_secs(20);

/// A fresh directory per case, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A new empty directory under the system's temp dir.
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "{}-never-panic-{}-{}",
            env!("CARGO_PKG_NAME"),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// Writes `bytes` to `name` in the directory.
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Scratch {
    /// Places an unmodified file in the directory (a hard link when possible).
    pub fn link(&self, name: &str, from: impl AsRef<Path>) {
        let to = self.0.join(name);
        if std::fs::hard_link(from.as_ref(), &to).is_err() {
            std::fs::copy(from.as_ref(), &to).unwrap();
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `cases` cases per property (`PROPTEST_CASES` overrides it, for a longer local search);
/// failures are reported (with the shrunk input), not persisted to a regressions file: the inputs
/// found are kept as `#[test]`s beside the properties.
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Runs `f` on its own thread: its panic is re-raised here (proptest records it as a failure and
/// shrinks), and running past [`LIMIT`] fails the case as a hang.
pub fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("still running after {LIMIT:?}: a hang"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => resume_unwind(panic),
            Ok(()) => panic!("the worker thread ended without a result"),
        },
    }
}

#[derive(Debug, Clone)]
pub enum ByteEdit {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, &'static [u8]),
    InsertRandom(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
    Duplicate(Index, usize),
}

pub fn byte_edit(splices: &'static [&'static [u8]]) -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| ByteEdit::Flip(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        (any::<Index>(), select(splices)).prop_map(|(i, s)| ByteEdit::Insert(i, s)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, v)| ByteEdit::InsertRandom(i, v)),
        (any::<Index>(), 1usize..16).prop_map(|(i, n)| ByteEdit::Delete(i, n)),
        any::<Index>().prop_map(ByteEdit::Truncate),
        (any::<Index>(), 1usize..32).prop_map(|(i, n)| ByteEdit::Duplicate(i, n)),
    ]
}

pub fn apply_bytes(mut data: Vec<u8>, edits: &[ByteEdit]) -> Vec<u8> {
    for e in edits {
        let len = data.len();
        // Positions in 0..=len (inserting at the end is allowed).
        let at = |i: &Index| i.index(len + 1);
        match e {
            ByteEdit::Flip(i, bit) if len > 0 => data[i.index(len)] ^= 1 << bit,
            ByteEdit::Set(i, b) if len > 0 => data[i.index(len)] = *b,
            ByteEdit::Insert(i, s) => {
                let p = at(i);
                data.splice(p..p, s.iter().copied());
            }
            ByteEdit::InsertRandom(i, v) => {
                let p = at(i);
                data.splice(p..p, v.iter().copied());
            }
            ByteEdit::Delete(i, n) => {
                let p = at(i);
                data.drain(p..(p + n).min(len));
            }
            ByteEdit::Truncate(i) => data.truncate(at(i)),
            ByteEdit::Duplicate(i, n) => {
                let p = at(i);
                let piece = data[p..(p + n).min(len)].to_vec();
                data.splice(p..p, piece);
            }
            _ => {}
        }
    }
    data
}

/// Up to 3 byte edits, inserting pieces of `splices` among others.
pub fn byte_edits(splices: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<ByteEdit>> {
    prop::collection::vec(byte_edit(splices), 0..4)
}

#[derive(Debug, Clone)]
pub enum JsonEdit {
    /// Replace a value by another JSON text.
    Replace(Index, &'static str),
    /// Add a second occurrence of an existing key (with another value) to an object.
    DuplicateKey(Index, Index, &'static str),
    /// Remove a value from its parent (the root: the whole text).
    Remove(Index),
    /// Wrap a value in `depth` arrays, or `depth` objects.
    Nest(Index, usize, bool),
    /// Replace a string by a long one.
    Long(Index, usize),
}

pub fn json_edit(weird: &'static [&'static str]) -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        3 => (any::<Index>(), select(weird)).prop_map(|(i, w)| JsonEdit::Replace(i, w)),
        2 => (any::<Index>(), any::<Index>(), select(weird))
            .prop_map(|(i, k, w)| JsonEdit::DuplicateKey(i, k, w)),
        2 => any::<Index>().prop_map(JsonEdit::Remove),
        1 => (any::<Index>(), select(vec![2usize, 64, 127, 128, 129, 1000]), any::<bool>())
            .prop_map(|(i, d, o)| JsonEdit::Nest(i, d, o)),
        1 => (any::<Index>(), select(vec![1000usize, 20_000])).prop_map(|(i, n)| JsonEdit::Long(i, n)),
    ]
}

/// 1 to 3 JSON edits, replacing values by texts of `weird` among others.
pub fn json_edits(weird: &'static [&'static str]) -> impl Strategy<Value = Vec<JsonEdit>> {
    prop::collection::vec(json_edit(weird), 1..4)
}

#[derive(Debug, Clone)]
pub enum Seg {
    Key(String),
    Idx(usize),
}

pub fn all_paths(v: &Value, at: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                at.push(Seg::Key(k.clone()));
                all_paths(c, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                at.push(Seg::Idx(i));
                all_paths(c, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

pub fn node<'a>(v: &'a Value, path: &[Seg]) -> &'a Value {
    path.iter().fold(v, |v, s| match s {
        Seg::Key(k) => &v[k.as_str()],
        Seg::Idx(i) => &v[*i],
    })
}

pub fn node_mut<'a>(v: &'a mut Value, path: &[Seg]) -> &'a mut Value {
    path.iter().fold(v, |v, s| match s {
        Seg::Key(k) => &mut v[k.as_str()],
        Seg::Idx(i) => &mut v[*i],
    })
}

pub const MARK: &str = "@@kiln-mark@@";
pub const KEY: &str = "@@kiln-key@@";

/// Applies JSON-level edits to a JSON text, stopping at the first one that leaves invalid JSON.
pub fn mutate_json(text: &str, edits: &[JsonEdit]) -> String {
    let mut text = text.to_string();
    for e in edits {
        let Ok(mut v) = serde_json::from_str::<Value>(&text) else {
            break;
        };
        let mut paths = Vec::new();
        all_paths(&v, &mut Vec::new(), &mut paths);
        let marked = |v: &Value| serde_json::to_string(v).unwrap();
        text = match e {
            JsonEdit::Replace(i, raw) => {
                *node_mut(&mut v, i.get::<Vec<Seg>>(&paths)) = Value::String(MARK.into());
                marked(&v).replacen(&format!("\"{MARK}\""), raw, 1)
            }
            JsonEdit::DuplicateKey(i, k, raw) => {
                let objects: Vec<&Vec<Seg>> = paths
                    .iter()
                    .filter(|p| node(&v, p).as_object().is_some_and(|o| !o.is_empty()))
                    .collect();
                if objects.is_empty() {
                    continue;
                }
                let path = (*i.get(&objects)).clone();
                let node = node_mut(&mut v, &path);
                let keys: Vec<String> = node.as_object().unwrap().keys().cloned().collect();
                let key = k.get(&keys).clone();
                node[KEY] = Value::String(MARK.into());
                marked(&v).replacen(
                    &format!("\"{KEY}\":\"{MARK}\""),
                    &format!("{}:{raw}", Value::String(key)),
                    1,
                )
            }
            JsonEdit::Remove(i) => {
                let path = i.get::<Vec<Seg>>(&paths);
                match path.split_last() {
                    None => String::new(),
                    Some((last, parent)) => {
                        let parent = node_mut(&mut v, parent);
                        match last {
                            Seg::Key(k) => {
                                parent.as_object_mut().unwrap().remove(k);
                            }
                            Seg::Idx(j) => {
                                parent.as_array_mut().unwrap().remove(*j);
                            }
                        }
                        marked(&v)
                    }
                }
            }
            JsonEdit::Nest(i, depth, objects) => {
                let node = node_mut(&mut v, i.get::<Vec<Seg>>(&paths));
                let inner = marked(node);
                *node = Value::String(MARK.into());
                let (open, close) = if *objects {
                    ("{\"a\":", "}")
                } else {
                    ("[", "]")
                };
                let raw = format!("{}{inner}{}", open.repeat(*depth), close.repeat(*depth));
                marked(&v).replacen(&format!("\"{MARK}\""), &raw, 1)
            }
            JsonEdit::Long(i, n) => {
                let strings: Vec<&Vec<Seg>> =
                    paths.iter().filter(|p| node(&v, p).is_string()).collect();
                if strings.is_empty() {
                    continue;
                }
                let path = (*i.get(&strings)).clone();
                let node = node_mut(&mut v, &path);
                let s = node.as_str().unwrap_or_default().to_string();
                *node = Value::String(s.repeat((n / s.len().max(1)).max(1)));
                marked(&v)
            }
        };
    }
    text
}

/// A mutated JSON document: JSON-level edits, then byte-level ones.
pub fn mutated(text: &str, json: &[JsonEdit], bytes: &[ByteEdit]) -> Vec<u8> {
    apply_bytes(mutate_json(text, json).into_bytes(), bytes)
}
