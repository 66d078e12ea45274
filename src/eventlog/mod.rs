//! A durable, append-only log of opaque records: every bid, win, billing, loss, click
//! and conversion, in segment files on local disk.
//!
//! [`EventLog::open`] recovers the directory and starts one writer thread (and one for
//! closed segments); the handle is cheap to clone and shared by every task. Records are
//! bytes (another module encodes them), at most [`MAX_RECORD_BYTES`] each, framed with a
//! length and a CRC ([`frame`]) in segments named in append order ([`segment`]). A
//! [`Reader`] reads them back in order, plain or compressed, while the log is written.
//!
//! **Guarantees.**
//! - *Durable records.* [`EventLog::append_durable`] resolves `Ok` only after its record
//!   is written **and fdatasynced** (a new segment's directory entry is synced when it is
//!   created), so an acknowledged record survives a process crash and a power loss.
//!   Durable records are never dropped: with the queue full they wait (asynchronously)
//!   for room. The writer commits them in groups, one fdatasync for all the records
//!   written since the last, and at most one commit per `commit_interval`.
//! - *Lossy records.* [`EventLog::append`] never blocks and never waits on the disk: it
//!   queues the record or, with the queue full, drops it, counts it and returns `false`.
//!   A queued record is written by the writer within 5 ms (or at the next durable
//!   record), reaches the file (the page cache) at the next commit and at most
//!   `flush_interval` after being written, and the disk at the next commit or rotation.
//! - *What a crash loses.* A process crash (`kill -9`) loses what was still queued
//!   (unacknowledged durable records and lossy ones), and the lossy records written in
//!   the last `flush_interval`; a power loss also loses lossy records written since the
//!   last commit. Neither loses an acknowledged durable record.
//! - *Errors.* A write or sync error never panics the writer: the waiters of every
//!   uncommitted record get [`EventLogError::Io`] (answer 503, the exchange retries),
//!   lossy records since the last commit are counted lost, the segment is cut back to
//!   its last commit, and later records go to a new segment. As on any log an error is
//!   "not acknowledged", not "not written": readers should tolerate a repeated record.
//! - *Order.* One thread writes. Durable records (and syncs) are written in the order
//!   they were queued, lossy ones likewise; a lossy record queued before a durable one
//!   is written before it, but one queued after a durable record that has not resolved
//!   yet may be written before it (lossy records wait up to 5 ms on a queue of their
//!   own, [`writer::LOSSY_DRAIN`], so that appending one never wakes the writer). So
//!   one task's records read back in the order of its calls as long as it awaits each
//!   `append_durable`. Segments are read in number order.
//! - *Crash recovery.* At `open` the newest plain segment is cut back to its last whole
//!   record (a writer killed mid-write leaves a torn one; the bytes cut are counted),
//!   closed, and a new segment is started: nothing is ever appended after a torn tail.
//!   Damage other than a torn end (a bad CRC or length on a complete frame) stops
//!   `open` with an error naming the file and byte offset.
//! - *Compression.* Closed segments are gzipped in the background, to `.gz.tmp`, fsync,
//!   rename to `.gz`, then the plain file is removed; **when both forms of a segment
//!   exist the plain one counts** (the reader ignores the `.gz`; `open` removes it and
//!   any `.gz.tmp`), so a crash mid-way neither loses nor duplicates a record
//!   ([`closed`]). Retention then removes the oldest closed segments beyond
//!   `retention_bytes`.
//! - *One writer.* `open` locks `LOCK` in the directory (flock, released by the
//!   kernel when the process dies); a second writer fails to open. Readers need no lock.
//! - *Shutdown.* [`EventLog::close`] (or dropping the last handle) writes and commits
//!   everything queued, closes the active segment, finishes compressing, and joins the
//!   threads.
//!
//! Dropping an `append_durable` future after its record was queued does not take the
//! record back: it is written and committed all the same.

mod closed;
mod config;
mod frame;
mod reader;
mod segment;
mod stats;
mod writer;

#[cfg(test)]
mod tests;

pub use config::*;
pub use frame::MAX_RECORD_BYTES;
pub use reader::{ReadError, Reader, Record};
pub use stats::EventLogStats;

use anyhow::Context;
use crossbeam_channel::{bounded, Sender, TrySendError};
use stats::Stats;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Wake};
use std::thread::JoinHandle;
use tokio::sync::{oneshot, Semaphore};
use writer::{Msg, Writer};

/// Why a record was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    #[error("record of {0} bytes is over the maximum of 1 MiB")]
    TooLarge(usize),
    #[error("the event log is closed")]
    Closed,
    #[error("event log: {op} failed: {kind}")]
    Io { op: &'static str, kind: io::ErrorKind },
}

impl EventLogError {
    fn io(op: &'static str, e: &io::Error) -> EventLogError {
        EventLogError::Io { op, kind: e.kind() }
    }
}

/// The file a writer holds locked (flock) in its directory.
const LOCK_FILE: &str = "LOCK";

/// What the handles and the threads share.
///
/// `slots` holds `queue_capacity` permits. An append takes one before queueing (a lossy
/// one only if one is free, and free slots go to waiting durable appends first: tokio's
/// semaphore is fair), and the writer gives them back as it takes messages off the
/// queue; so the queue never holds more than `queue_capacity` messages, and a send into
/// it after taking a slot always finds room. The writer closes `slots` when it stops.
struct Shared {
    slots: Semaphore,
    stats: Arc<Stats>,
}

/// The handle to the event log: `Clone + Send + Sync`, one writer behind all clones.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Sender<Msg>,
    /// Lossy records, on a queue the writer drains on a timer ([`writer::LOSSY_DRAIN`]):
    /// appending one never wakes it.
    lossy: Sender<Vec<u8>>,
    shared: Arc<Shared>,
    /// The writer thread, until `close` or the last drop joins it.
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl EventLog {
    /// Validates `cfg`, creates `cfg.dir` if missing, recovers it (see the module doc),
    /// starts a new segment and the threads. Errors name the file or setting at fault.
    pub fn open(cfg: EventLogConfig) -> anyhow::Result<EventLog> {
        cfg.validate()?;
        let dir = cfg.dir.clone();
        std::fs::create_dir_all(&dir).with_context(|| format!("event log dir {}", dir.display()))?;
        let lock = lock(&dir)?;
        let stats = Arc::new(Stats::default());
        let (to_close, next_seq) = recover_dir(&dir, &stats)?;
        let policy =
            closed::Policy { dir: dir.clone(), compress: cfg.compress_closed, retention_bytes: cfg.retention_bytes };
        let closer = closed::Closer::start(policy, stats.clone())?;
        for seq in to_close {
            closer.closed(seq);
        }
        let (tx, rx) = bounded(cfg.queue_capacity);
        let (lossy, lossy_rx) = bounded(cfg.queue_capacity);
        let shared = Arc::new(Shared { slots: Semaphore::new(cfg.queue_capacity), stats });
        let mut writer = Writer::new(cfg, (rx, lossy_rx), shared.clone(), closer, next_seq, lock);
        writer.start_segment().context("event log")?;
        let thread = std::thread::Builder::new().name("eventlog-writer".into()).spawn(move || writer.run())?;
        Ok(EventLog { inner: Arc::new(Inner { tx, lossy, shared, thread: Mutex::new(Some(thread)) }) })
    }

    /// Queues a record for writing, or drops it when the queue is full (counted): never
    /// blocks. `false` when dropped, over [`MAX_RECORD_BYTES`], or the log is closed.
    pub fn append(&self, record: Vec<u8>) -> bool {
        let stats = &self.inner.shared.stats;
        if record.len() > MAX_RECORD_BYTES {
            stats.too_large.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let queued = match self.inner.shared.slots.try_acquire() {
            Ok(slot) => {
                slot.forget();
                match self.inner.lossy.try_send(record) {
                    Ok(()) => true,
                    Err(_) => {
                        self.inner.shared.slots.add_permits(1);
                        false
                    }
                }
            }
            Err(_) => false,
        };
        if !queued {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// Appends a record and resolves once it is written and fdatasynced; with the queue
    /// full it waits for room. Never blocks the calling thread.
    pub async fn append_durable(&self, record: Vec<u8>) -> Result<(), EventLogError> {
        if record.len() > MAX_RECORD_BYTES {
            self.inner.shared.stats.too_large.fetch_add(1, Ordering::Relaxed);
            return Err(EventLogError::TooLarge(record.len()));
        }
        let (reply, done) = oneshot::channel();
        self.enqueue(Msg::Durable(record, reply)).await?;
        done.await.unwrap_or(Err(EventLogError::Closed))
    }

    /// [`EventLog::append_durable`] for a thread outside the async runtime: blocks it.
    pub fn append_durable_blocking(&self, record: Vec<u8>) -> Result<(), EventLogError> {
        block_on(self.append_durable(record))
    }

    /// Resolves at the next commit: every record queued before the call (lossy ones
    /// included) is then written and fdatasynced.
    pub async fn sync(&self) -> Result<(), EventLogError> {
        let (reply, done) = oneshot::channel();
        self.enqueue(Msg::Sync(reply)).await?;
        done.await.unwrap_or(Err(EventLogError::Closed))
    }

    /// [`EventLog::sync`], blocking the calling thread.
    pub fn sync_blocking(&self) -> Result<(), EventLogError> {
        block_on(self.sync())
    }

    /// The counters now.
    pub fn stats(&self) -> EventLogStats {
        self.inner.shared.stats.snapshot(self.inner.tx.len() + self.inner.lossy.len())
    }

    /// Appends the counters to `out` as `ctrbid_eventlog_*` Prometheus lines.
    pub fn render_prometheus(&self, out: &mut String) {
        self.stats().render_prometheus(out);
    }

    /// Writes and commits everything queued, closes the active segment, finishes
    /// compressing, and stops the threads (for every clone: their appends then fail).
    /// Blocks the calling thread until then. The outcome of the last commit; `Closed` if
    /// the log was already closed.
    pub fn close(self) -> Result<(), EventLogError> {
        let (reply, done) = oneshot::channel();
        let result = match block_on(self.enqueue(Msg::Close(reply))) {
            Ok(()) => block_on(done).unwrap_or(Err(EventLogError::Closed)),
            Err(e) => Err(e),
        };
        self.inner.join();
        result
    }

    /// Takes a slot, waiting for one, and queues `msg`.
    async fn enqueue(&self, msg: Msg) -> Result<(), EventLogError> {
        let slot = self.inner.shared.slots.acquire().await.map_err(|_| EventLogError::Closed)?;
        slot.forget();
        self.send(msg)
    }

    /// Queues `msg` for a slot already taken (given back if the send fails).
    fn send(&self, msg: Msg) -> Result<(), EventLogError> {
        match self.inner.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.inner.shared.slots.add_permits(1);
                debug_assert!(matches!(e, TrySendError::Disconnected(_)), "a slot was taken, so the queue had room");
                Err(EventLogError::Closed)
            }
        }
    }

    fn hook(&self, hook: writer::Hook) {
        block_on(self.enqueue(Msg::Hook(hook))).expect("the writer runs");
    }

    /// A fault drill: the writer stops, as on a disk that no longer answers, until the
    /// returned guard is dropped; lossy appends then fill the queue and are dropped
    /// (counted), durable ones wait. Returns once the writer has stopped. For tests and
    /// drills of the services built on the log, never for serving.
    #[doc(hidden)]
    pub fn stall_writer(&self) -> WriterStall {
        let (release, until) = crossbeam_channel::bounded(0);
        self.hook(writer::Hook::Stall(until));
        while self.stats().queue_depth > 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        WriterStall { _release: release }
    }
}

/// Holds the writer stopped ([`EventLog::stall_writer`]) until dropped.
#[doc(hidden)]
pub struct WriterStall {
    _release: crossbeam_channel::Sender<()>,
}

impl Inner {
    fn join(&self) {
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Inner {
    /// The last handle is gone: the writer sees the queue disconnected once it has
    /// written everything in it, commits, and stops.
    fn drop(&mut self) {
        let (unused, _) = bounded(0);
        drop(std::mem::replace(&mut self.tx, unused));
        self.join();
    }
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").field("stats", &self.stats()).finish()
    }
}

/// Puts a directory left by a crash right (see the module doc): [`closed::tidy`], then
/// the newest plain segment cut back to its last whole record (removed when none is
/// left). The segments to close (all plain ones left: none is written any more) and
/// the number of the next segment.
fn recover_dir(dir: &std::path::Path, stats: &Stats) -> anyhow::Result<(Vec<u64>, u64)> {
    let plain = closed::tidy(dir).with_context(|| format!("event log dir {}", dir.display()))?;
    let next_seq = segment::list(dir)?.last().map_or(1, |f| f.seq + 1);
    let mut to_close = Vec::with_capacity(plain.len());
    for seq in plain {
        if seq + 1 == next_seq {
            let path = segment::path(dir, seq, false);
            let done = segment::recover(&path).context("event log recovery")?;
            stats.torn_bytes_cut.fetch_add(done.cut_bytes, Ordering::Relaxed);
            if done.cut_bytes > 0 {
                eprintln!("ctrbid: event log: cut a torn record of {} bytes from {}", done.cut_bytes, path.display());
            }
            if done.removed {
                continue;
            }
            if done.records == 0 {
                std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                continue;
            }
        }
        to_close.push(seq);
    }
    Ok((to_close, next_seq))
}

/// Takes `dir/LOCK` for the writer (released when its file is closed, also by a crash):
/// two writers on one directory would corrupt it.
fn lock(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::File::create(&path).with_context(|| format!("event log lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            anyhow::bail!("event log dir {} is in use by another writer ({} is locked)", dir.display(), path.display())
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("event log lock {}", path.display())),
    }
}

/// Runs a future to completion on the calling thread, parking it between polls.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = TaskContext::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
