//! Streaming JSON Lines reader and crash-safe (temp file + rename) writer.
//!
//! The reader parses one line at a time, skips blank lines, and turns every problem into an
//! [`Error::Record`] naming the file, the 1-based line and the field (e.g. `responses[1]`). A file
//! with no record at all is an [`Error::EmptyFile`] unless [`JsonlReader::allow_empty`] is set.
//!
//! The writer writes into a temporary file in the destination directory, then flushes, fsyncs and
//! renames it over the destination in [`JsonlWriter::finish`]: a crash never leaves a truncated stage
//! file, only a stray `*.tmp` file. Dropping an unfinished writer deletes the temporary file.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::atomic::AtomicFile;
use crate::error::{Error, Result};

/// Parses one JSON Lines record, mapping failures to an [`Error::Record`] at `path:line`.
pub fn parse_record<T: DeserializeOwned>(path: &Path, line: usize, text: &str) -> Result<T> {
    let mut de = serde_json::Deserializer::from_str(text);
    let result: std::result::Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match result {
        Ok(v) => v,
        Err(e) => {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let syntax = inner.is_syntax() || inner.is_eof();
            let message = strip_position(&inner);
            return Err(Error::Record {
                path: path.to_path_buf(),
                line,
                field: if syntax || field == "." {
                    None
                } else {
                    Some(field)
                },
                message: if syntax {
                    format!("invalid JSON: {message}")
                } else {
                    message
                },
            });
        }
    };
    de.end().map_err(|e| Error::Record {
        path: path.to_path_buf(),
        line,
        field: None,
        message: format!("invalid JSON: {}", strip_position(&e)),
    })?;
    Ok(value)
}

/// serde_json appends "at line 1 column N" (positions inside the single line); keep only the column.
fn strip_position(e: &serde_json::Error) -> String {
    let full = e.to_string();
    match full.rfind(" at line ") {
        Some(i) if e.column() > 0 => format!("{} (column {})", &full[..i], e.column()),
        _ => full,
    }
}

/// Iterator over the records of a JSON Lines file, reading line by line.
///
/// ```no_run
/// use kiln_data::{JsonlReader, GenerationRecord};
/// for record in JsonlReader::<GenerationRecord>::open("generations.jsonl")? {
///     let record = record?;
///     let _ = record.responses.len();
/// }
/// # Ok::<(), kiln_data::Error>(())
/// ```
#[derive(Debug)]
pub struct JsonlReader<T, R = BufReader<File>> {
    path: PathBuf,
    reader: R,
    line: usize,
    records: usize,
    allow_empty: bool,
    done: bool,
    buf: String,
    _marker: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> JsonlReader<T> {
    /// Opens `path` for streaming.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Self::from_reader(path, BufReader::new(file)))
    }
}

impl<T: DeserializeOwned, R: BufRead> JsonlReader<T, R> {
    /// Streams records from any buffered reader; `name` is used in error messages.
    pub fn from_reader(name: impl Into<PathBuf>, reader: R) -> Self {
        JsonlReader {
            path: name.into(),
            reader,
            line: 0,
            records: 0,
            allow_empty: false,
            done: false,
            buf: String::new(),
            _marker: PhantomData,
        }
    }

    /// Whether a file without records is accepted (default: no, it is an [`Error::EmptyFile`]).
    pub fn allow_empty(mut self, allow: bool) -> Self {
        self.allow_empty = allow;
        self
    }

    /// 1-based number of the last line read (0 before the first read).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The file name used in error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl<T: DeserializeOwned, R: BufRead> Iterator for JsonlReader<T, R> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.done {
            return None;
        }
        loop {
            self.buf.clear();
            match self.reader.read_line(&mut self.buf) {
                Err(e) => {
                    self.done = true;
                    return Some(Err(Error::Record {
                        path: self.path.clone(),
                        line: self.line + 1,
                        field: None,
                        message: format!("cannot read line: {e}"),
                    }));
                }
                Ok(0) => {
                    self.done = true;
                    if self.records == 0 && !self.allow_empty {
                        return Some(Err(Error::EmptyFile {
                            path: self.path.clone(),
                            line: self.line.max(1),
                        }));
                    }
                    return None;
                }
                Ok(_) => {
                    self.line += 1;
                    let text = self.buf.trim();
                    if text.is_empty() {
                        continue;
                    }
                    self.records += 1;
                    return Some(parse_record(&self.path, self.line, text));
                }
            }
        }
    }
}

/// Reads a whole JSON Lines file into memory (convenience over [`JsonlReader`]).
pub fn read_jsonl<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<Vec<T>> {
    JsonlReader::open(path)?.collect()
}

/// Writes records to a temporary file and atomically renames it over the destination on
/// [`finish`](JsonlWriter::finish) (an [`AtomicFile`]).
#[derive(Debug)]
pub struct JsonlWriter<T> {
    file: AtomicFile,
    records: usize,
    _marker: PhantomData<fn(&T)>,
}

impl<T: Serialize> JsonlWriter<T> {
    /// Creates the temporary file next to `dest` (same directory, so the rename is atomic).
    pub fn create(dest: impl AsRef<Path>) -> Result<Self> {
        Ok(JsonlWriter {
            file: AtomicFile::create(dest)?,
            records: 0,
            _marker: PhantomData,
        })
    }

    /// Appends one record as a single line.
    pub fn write(&mut self, record: &T) -> Result<()> {
        let dest = self.file.dest().to_path_buf();
        let line = self.records + 1;
        let out = self.file.writer()?;
        serde_json::to_writer(&mut *out, record).map_err(|e| Error::Record {
            path: dest,
            line,
            field: None,
            message: format!("cannot serialise record: {e}"),
        })?;
        self.file.write_all(b"\n")?;
        self.records += 1;
        Ok(())
    }

    /// Number of records written so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Flushes, fsyncs and renames the temporary file onto the destination. Returns the record count.
    pub fn finish(self) -> Result<usize> {
        let dest = self.file.dest().to_path_buf();
        self.file.commit()?;
        tracing::debug!(path = %dest.display(), records = self.records, "wrote JSON Lines file");
        Ok(self.records)
    }
}

/// Writes all `records` to `dest` atomically; returns how many were written.
pub fn write_jsonl<'a, T: Serialize + 'a>(
    dest: impl AsRef<Path>,
    records: impl IntoIterator<Item = &'a T>,
) -> Result<usize> {
    let mut w = JsonlWriter::create(dest)?;
    for r in records {
        w.write(r)?;
    }
    w.finish()
}
