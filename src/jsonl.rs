//! JSON-lines logs on disk, plain or gzip-compressed.
//!
//! The simulator's logs take about 0.8 kB per impression: 25 GB at 30M impressions,
//! more than a training disk should hold next to the arrays made from them. Written
//! with [`Compression::Gzip`] they are `NAME.gz` at about a fifth of that, compressed by
//! a thread of its own (level 1), so that the simulator and the compressor share the
//! cores instead of taking turns. [`open`] reads `NAME` or `NAME.gz`, whichever exists.
//!
//! Invariant: a log directory holds at most one form of each log. [`LogWriter::create`]
//! removes the other form's file, and [`open`] refuses a directory holding both.

use crossbeam_channel::{bounded, Sender};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// Bytes handed to the compressing thread at a time.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the writer and the compressing thread.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Output buffer of a plain log, and of the compressed stream.
const WRITE_BUFFER: usize = 1 << 20;

/// How a log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compression {
    /// `NAME`, plain text.
    #[default]
    None,
    /// `NAME.gz`, gzip at level 1.
    Gzip,
}

/// `path` with `.gz` appended (`requests.jsonl` -> `requests.jsonl.gz`).
pub fn gz_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    PathBuf::from(name)
}

/// A log being written; [`LogWriter::finish`] completes it (a writer dropped without it
/// may leave a truncated file).
pub struct LogWriter {
    path: PathBuf,
    sink: Sink,
}

enum Sink {
    Plain(BufWriter<File>),
    Gzip { chunk: Vec<u8>, tx: Option<Sender<Vec<u8>>>, worker: Option<JoinHandle<io::Result<()>>> },
}

impl LogWriter {
    /// Creates the log `path` (plain) or `path.gz`, and removes the other form's file if
    /// an earlier run left one.
    pub fn create(path: &Path, compression: Compression) -> io::Result<LogWriter> {
        let (path, other) = match compression {
            Compression::None => (path.to_path_buf(), gz_path(path)),
            Compression::Gzip => (gz_path(path), path.to_path_buf()),
        };
        match std::fs::remove_file(&other) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(with_path(e, &other)),
            _ => {}
        }
        let file = File::create(&path).map_err(|e| with_path(e, &path))?;
        let out = BufWriter::with_capacity(WRITE_BUFFER, file);
        let sink = match compression {
            Compression::None => Sink::Plain(out),
            Compression::Gzip => {
                let (tx, rx) = bounded::<Vec<u8>>(CHUNKS_IN_FLIGHT);
                let worker = std::thread::Builder::new().name("log-gzip".into()).spawn(move || {
                    let mut enc = GzEncoder::new(out, flate2::Compression::fast());
                    for chunk in rx {
                        enc.write_all(&chunk)?;
                    }
                    enc.finish()?.flush()
                })?;
                Sink::Gzip { chunk: Vec::with_capacity(CHUNK), tx: Some(tx), worker: Some(worker) }
            }
        };
        Ok(LogWriter { path, sink })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes everything and, for gzip, writes the stream's trailer and waits for the
    /// compressing thread; its first error, if any, is returned here.
    pub fn finish(mut self) -> io::Result<()> {
        let path = self.path.clone();
        match &mut self.sink {
            Sink::Plain(out) => out.flush(),
            Sink::Gzip { chunk, tx, worker } => {
                let last = std::mem::take(chunk);
                // A failed send means the thread stopped on an error, which join returns.
                if let Some(tx) = tx.take() {
                    let _ = tx.send(last);
                }
                join(worker)
            }
        }
        .map_err(|e| with_path(e, &path))
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.sink {
            Sink::Plain(out) => out.write(buf),
            Sink::Gzip { chunk, tx, worker } => {
                chunk.extend_from_slice(buf);
                if chunk.len() >= CHUNK {
                    let full = std::mem::replace(chunk, Vec::with_capacity(CHUNK));
                    let sent = tx.as_ref().is_some_and(|tx| tx.send(full).is_ok());
                    if !sent {
                        tx.take();
                        join(worker)?;
                        return Err(io::Error::other("the compressing thread stopped"));
                    }
                }
                Ok(buf.len())
            }
        }
    }

    /// Plain logs flush to the file; gzip logs are complete only after [`LogWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::Plain(out) => out.flush(),
            Sink::Gzip { .. } => Ok(()),
        }
    }
}

impl Drop for LogWriter {
    /// Lets the compressing thread end (the file may be truncated: see `finish`).
    fn drop(&mut self) {
        if let Sink::Gzip { tx, worker, .. } = &mut self.sink {
            tx.take();
            let _ = join(worker);
        }
    }
}

fn join(worker: &mut Option<JoinHandle<io::Result<()>>>) -> io::Result<()> {
    match worker.take() {
        Some(handle) => handle.join().unwrap_or_else(|_| Err(io::Error::other("the compressing thread panicked"))),
        None => Ok(()),
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Opens the log `path`, plain, or `path.gz` if only that exists; errors name the file
/// (or both forms, when neither or both exist).
pub fn open(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    let gz = gz_path(path);
    match (path.exists(), gz.exists()) {
        (true, true) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("both {} and {} exist: remove the stale one", path.display(), gz.display()),
        )),
        (false, true) => {
            let file = File::open(&gz).map_err(|e| with_path(e, &gz))?;
            Ok(Box::new(BufReader::with_capacity(WRITE_BUFFER, MultiGzDecoder::new(file))))
        }
        (true, false) => {
            let file = File::open(path).map_err(|e| with_path(e, path))?;
            Ok(Box::new(BufReader::with_capacity(WRITE_BUFFER, file)))
        }
        (false, false) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("neither {} nor {} exists", path.display(), gz.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn lines(n: usize) -> Vec<u8> {
        let mut text = Vec::new();
        for i in 0..n {
            writeln!(text, r#"{{"line":{i},"pad":"{}"}}"#, "x".repeat(i % 97)).unwrap();
        }
        text
    }

    fn write_log(path: &Path, compression: Compression, text: &[u8]) {
        let mut w = LogWriter::create(path, compression).unwrap();
        // Uneven pieces, so that chunk boundaries fall inside lines.
        for piece in text.chunks(4093) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn both_forms_read_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        // Several compressor chunks.
        let text = lines(60_000);
        assert!(text.len() > 3 * CHUNK);
        for compression in [Compression::None, Compression::Gzip] {
            let path = dir.path().join("log.jsonl");
            write_log(&path, compression, &text);
            let mut back = Vec::new();
            open(&path).unwrap().read_to_end(&mut back).unwrap();
            assert!(back == text, "{compression:?} did not read back as written");
        }
        let gz = std::fs::metadata(gz_path(&dir.path().join("log.jsonl"))).unwrap().len();
        assert!((gz as usize) < text.len() / 4, "{gz} compressed bytes for {}", text.len());
    }

    #[test]
    fn writing_one_form_removes_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        write_log(&path, Compression::None, b"{}\n");
        write_log(&path, Compression::Gzip, b"[]\n");
        assert!(!path.exists() && gz_path(&path).exists());
        let mut back = String::new();
        open(&path).unwrap().read_to_string(&mut back).unwrap();
        assert_eq!(back, "[]\n");
        write_log(&path, Compression::None, b"{}\n");
        assert!(path.exists() && !gz_path(&path).exists());
    }

    #[test]
    fn open_names_the_files_when_neither_or_both_exist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let err = open(&path).err().unwrap().to_string();
        assert!(err.contains("log.jsonl.gz") && err.starts_with("neither"), "{err}");
        std::fs::write(&path, b"").unwrap();
        std::fs::write(gz_path(&path), b"").unwrap();
        let err = open(&path).err().unwrap().to_string();
        assert!(err.starts_with("both") && err.contains("stale"), "{err}");
    }

    #[test]
    fn an_unwritable_log_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("log.jsonl");
        let err = LogWriter::create(&path, Compression::Gzip).err().unwrap().to_string();
        assert!(err.contains("missing-dir/log.jsonl.gz"), "{err}");
    }
}
