//! Closed segments, on a thread of their own: gzip, then retention.
//!
//! **Compression and crashes.** Segment `n` is compressed to `seg-n.log.gz.tmp`, which
//! is fsynced, renamed to `seg-n.log.gz` (directory fsynced), and only then is
//! `seg-n.log` removed. A crash at any point leaves the plain file, the compressed one,
//! or both; the rule everywhere is that **when both exist the plain file is the
//! segment**: the reader reads it and ignores the `.gz`, and the next `open` removes the
//! `.gz` and any `.gz.tmp` and compresses again. So no record is lost or read twice.
//!
//! **Retention.** After each closed segment, while the closed segments' files (both
//! forms, when both exist) take more than `retention_bytes`, the oldest is removed. The
//! segment being written is never a candidate: only segments this thread was handed
//! (numbers up to the newest closed one) are.

use super::segment::{self, with_path};
use super::stats::Stats;
use crossbeam_channel::{unbounded, Receiver, Sender};
use flate2::write::GzEncoder;
use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Output buffer of the compressed file.
const GZ_BUFFER: usize = 256 << 10;

/// What happens to a closed segment.
#[derive(Debug, Clone)]
pub struct Policy {
    pub dir: PathBuf,
    pub compress: bool,
    pub retention_bytes: u64,
}

/// The thread that compresses closed segments and applies retention. Handing it a
/// segment never blocks (the queue holds segment numbers only).
pub struct Closer {
    tx: Option<Sender<u64>>,
    thread: Option<JoinHandle<()>>,
}

impl Closer {
    pub fn start(policy: Policy, stats: Arc<Stats>) -> io::Result<Closer> {
        let (tx, rx) = unbounded::<u64>();
        let thread =
            std::thread::Builder::new().name("eventlog-closed".into()).spawn(move || run(rx, policy, stats))?;
        Ok(Closer { tx: Some(tx), thread: Some(thread) })
    }

    /// Segment `seq` is closed: no writer will touch it again.
    pub fn closed(&self, seq: u64) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(seq);
        }
    }
}

impl Drop for Closer {
    /// Finishes the segments handed over so far, then joins the thread.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(rx: Receiver<u64>, policy: Policy, stats: Arc<Stats>) {
    let mut newest = 0;
    for seq in rx {
        newest = newest.max(seq);
        if policy.compress {
            match compress(&policy.dir, seq) {
                Ok(true) => {
                    stats.segments_compressed.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => {}
                Err(e) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("ctrbid: event log: segment {seq} stays uncompressed: {e}");
                }
            }
        }
        match retain(&policy.dir, newest, policy.retention_bytes) {
            Ok(deleted) => {
                stats.segments_deleted.fetch_add(deleted, Ordering::Relaxed);
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("ctrbid: event log: retention: {e}");
            }
        }
    }
}

/// Compresses segment `seq` (see the module doc for the steps); `Ok(false)` when its
/// plain file is gone (removed by retention). On error the plain file stays and the
/// `.gz.tmp` is removed.
pub fn compress(dir: &Path, seq: u64) -> io::Result<bool> {
    let (plain, gz, tmp) = (segment::path(dir, seq, false), segment::path(dir, seq, true), segment::tmp_path(dir, seq));
    let input = match File::open(&plain) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(with_path(e, &plain)),
    };
    let written = (|| {
        let out = BufWriter::with_capacity(GZ_BUFFER, File::create(&tmp)?);
        let mut enc = GzEncoder::new(out, flate2::Compression::fast());
        io::copy(&mut BufReader::with_capacity(segment::READ_BUFFER, input), &mut enc)?;
        let file = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(with_path(e, &tmp));
    }
    std::fs::rename(&tmp, &gz).map_err(|e| with_path(e, &gz))?;
    segment::sync_dir(dir)?;
    std::fs::remove_file(&plain).map_err(|e| with_path(e, &plain))?;
    segment::sync_dir(dir)?;
    Ok(true)
}

/// Removes the oldest segments numbered up to `newest` while they take more than
/// `limit` bytes; the number removed.
pub fn retain(dir: &Path, newest: u64, limit: u64) -> io::Result<u64> {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let closed: Vec<(u64, u64)> = segment::list(dir)?
        .into_iter()
        .filter(|f| f.seq <= newest)
        .map(|f| (f.seq, size(&segment::path(dir, f.seq, false)) + size(&segment::path(dir, f.seq, true))))
        .collect();
    let mut total: u64 = closed.iter().map(|(_, bytes)| bytes).sum();
    let mut deleted = 0;
    for (seq, bytes) in closed {
        if total <= limit {
            break;
        }
        for gz in [true, false] {
            let path = segment::path(dir, seq, gz);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(with_path(e, &path)),
                _ => {}
            }
        }
        total -= bytes;
        deleted += 1;
    }
    if deleted > 0 {
        segment::sync_dir(dir)?;
    }
    Ok(deleted)
}

/// Makes a directory left by a crash follow the rule of the module doc: removes every
/// `.gz.tmp`, and the `.gz` of every segment whose plain file exists. The plain
/// segments then left, every one closed, are returned for compression.
pub fn tidy(dir: &Path) -> io::Result<Vec<u64>> {
    let mut plain = Vec::new();
    for f in segment::list(dir)? {
        if f.tmp {
            remove(&segment::tmp_path(dir, f.seq))?;
        }
        if f.plain && f.gz {
            remove(&segment::path(dir, f.seq, true))?;
        }
        if f.plain {
            plain.push(f.seq);
        }
    }
    Ok(plain)
}

fn remove(path: &Path) -> io::Result<()> {
    std::fs::remove_file(path).map_err(|e| with_path(e, path))
}
