//! The writer thread: takes records off the queue, frames them into the active
//! segment, group-commits durable ones, flushes lossy ones, rotates segments.
//!
//! One loop: wait for a message or for the next deadline (a commit, a flush, a
//! rotation by age, or the next drain of the lossy queue), take up to [`BATCH`]
//! messages, write them, then do whatever is due. Lossy records come on a queue of
//! their own that the writer drains every [`LOSSY_DRAIN`] and before each batch of
//! other messages, so that a bid record does not wake the writer: with a wake-up per
//! record (a futex call on the bid path, a context switch on a 2-core box) logging every
//! bid cost x1.08-1.10 CPU per request, drained on the timer x0.94-1.06, within the
//! box's noise (loadtest/README.md, The event log under load). A commit is due when records wait on it and the last commit (if any) *began*
//! at least `commit_interval` ago, so commits run at most once per interval and a
//! durable record that comes after a quiet spell is committed as soon as its batch is
//! written.
//!
//! On an I/O error the active segment is abandoned ([`Active::abandon`]: cut back to its
//! last commit), every waiter of an uncommitted record gets the error, the lossy records
//! since the last commit are counted lost, and the next record opens a new segment (at
//! most once per [`RETRY`], failing fast in between).

use super::closed::Closer;
use super::frame;
use super::segment::Active;
use super::{EventLogConfig, EventLogError, Shared};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::fs::File;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Messages taken off the queue at a time.
const BATCH: usize = 1024;
/// How often the writer takes the lossy records queued (and at every other message).
pub const LOSSY_DRAIN: Duration = Duration::from_millis(5);
/// The least time between attempts to open a segment after one failed.
const RETRY: Duration = Duration::from_millis(100);
/// How long the writer, once stopped, waits for appends already past the capacity check.
const STRAGGLERS: Duration = Duration::from_secs(1);

pub type Reply = oneshot::Sender<Result<(), EventLogError>>;

/// What the queue carries to the writer.
pub enum Msg {
    Lossy(Vec<u8>),
    /// Answered once the record is written and fdatasynced.
    Durable(Vec<u8>, Reply),
    /// Answered at the next commit: whatever was queued before it is then durable.
    Sync(Reply),
    /// Commit, close the active segment, stop; answered with the commit's outcome.
    Close(Reply),
    Hook(Hook),
}

/// Fault drills (and test hooks), run by the writer in queue order.
pub enum Hook {
    /// Block until the sender of this channel is dropped: a disk that stops answering.
    Stall(Receiver<()>),
    /// Fail the next this many segment writes or syncs.
    #[cfg(test)]
    FailWrites(u32),
}

pub struct Writer {
    cfg: EventLogConfig,
    rx: Receiver<Msg>,
    /// Lossy records ([`LOSSY_DRAIN`]); their slots count with `rx`'s.
    lossy: Receiver<Vec<u8>>,
    shared: Arc<Shared>,
    closer: Closer,
    active: Option<Active>,
    /// The number of the next segment to create; every attempt uses one up.
    next_seq: u64,
    /// Waiters of records (and syncs) written since the last commit.
    pending: Vec<Reply>,
    /// Lossy records written since the last commit: lost if the segment fails.
    uncommitted_lossy: u64,
    /// When the last commit began; `None` before the first.
    last_commit: Option<Instant>,
    /// When the oldest write the file may not have yet was made; `None`: flushed.
    unflushed_since: Option<Instant>,
    /// No segment is created before this (after a failed attempt).
    retry_at: Option<Instant>,
    /// Counts not yet added to `shared.stats` (published per batch).
    records: u64,
    bytes: u64,
    /// The directory's lock, held while the writer runs.
    _lock: File,
    #[cfg(test)]
    fail_writes: u32,
}

impl Writer {
    pub fn new(
        cfg: EventLogConfig,
        (rx, lossy): (Receiver<Msg>, Receiver<Vec<u8>>),
        shared: Arc<Shared>,
        closer: Closer,
        next_seq: u64,
        lock: File,
    ) -> Writer {
        Writer {
            cfg,
            rx,
            lossy,
            shared,
            closer,
            active: None,
            next_seq,
            pending: Vec::new(),
            uncommitted_lossy: 0,
            last_commit: None,
            unflushed_since: None,
            retry_at: None,
            records: 0,
            bytes: 0,
            _lock: lock,
            #[cfg(test)]
            fail_writes: 0,
        }
    }

    /// Creates the first segment, so that a log that cannot write fails at `open`.
    pub fn start_segment(&mut self) -> io::Result<()> {
        self.active = Some(self.create()?);
        Ok(())
    }

    /// Runs until a `Close` message or until every handle is gone.
    pub fn run(mut self) {
        let mut batch: Vec<Msg> = Vec::with_capacity(BATCH);
        let mut close = None;
        let mut next_drain = Instant::now() + LOSSY_DRAIN;
        while close.is_none() {
            let wake = self.deadline().map_or(next_drain, |at| at.min(next_drain));
            let first = match self.rx.recv_deadline(wake) {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if Instant::now() >= next_drain {
                next_drain = Instant::now() + LOSSY_DRAIN;
            }
            self.drain_lossy();
            if let Some(first) = first {
                batch.push(first);
                batch.extend(self.rx.try_iter().take(BATCH - 1));
                // Their slots are free again: the queue holds at most `queue_capacity`.
                self.shared.slots.add_permits(batch.len());
                for msg in batch.drain(..) {
                    // The lossy records queued before this message go first (and
                    // perhaps some queued after it: see the module doc on order).
                    self.drain_lossy();
                    match msg {
                        Msg::Close(reply) if close.is_none() => close = Some(reply),
                        // Queued after a close (by another handle): the log is closed.
                        msg if close.is_some() => refuse(msg, &self.shared),
                        msg => self.handle(msg),
                    }
                }
            }
            self.tick(Instant::now());
        }
        self.drain_lossy();
        let result = self.finish();
        if let Some(reply) = close {
            let _ = reply.send(result);
        }
    }

    /// Writes the lossy records queued now, and frees their slots.
    fn drain_lossy(&mut self) {
        let mut taken = 0;
        while let Ok(record) = self.lossy.try_recv() {
            taken += 1;
            self.handle(Msg::Lossy(record));
        }
        self.shared.slots.add_permits(taken);
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Lossy(record) => match self.write(&record) {
                Ok(()) => self.uncommitted_lossy += 1,
                Err(_) => {
                    self.shared.stats.lost.fetch_add(1, Ordering::Relaxed);
                }
            },
            Msg::Durable(record, reply) => match self.write(&record) {
                Ok(()) => self.pending.push(reply),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Msg::Sync(reply) => self.pending.push(reply),
            Msg::Close(_) => unreachable!("run takes the close"),
            Msg::Hook(Hook::Stall(until)) => {
                let _ = until.recv();
            }
            #[cfg(test)]
            Msg::Hook(Hook::FailWrites(n)) => self.fail_writes = n,
        }
    }

    /// The next time something is due while no message comes.
    fn deadline(&self) -> Option<Instant> {
        let commit = (!self.pending.is_empty()).then(|| self.commit_due().unwrap_or_else(Instant::now));
        let flush = self.unflushed_since.map(|t| t + self.cfg.flush_interval);
        let age = self.active.as_ref().and_then(Active::first_at).map(|t| t + self.cfg.segment_max_age);
        [commit, flush, age].into_iter().flatten().min()
    }

    /// Whatever is due at `now`, after a batch or a deadline.
    fn tick(&mut self, now: Instant) {
        self.publish();
        if !self.pending.is_empty() && self.commit_due().is_none_or(|due| now >= due) {
            self.commit(now);
        } else if self.unflushed_since.is_some_and(|t| now >= t + self.cfg.flush_interval) {
            self.flush();
        }
        if self.active.as_ref().and_then(Active::first_at).is_some_and(|t| now >= t + self.cfg.segment_max_age) {
            self.rotate();
        }
    }

    /// When the next commit may begin; `None`: at once.
    fn commit_due(&self) -> Option<Instant> {
        self.last_commit.map(|t| t + self.cfg.commit_interval)
    }

    /// Frames one record into the active segment, rotating first when it would make
    /// the segment larger than `segment_bytes` (a segment holds at least one record).
    fn write(&mut self, record: &[u8]) -> Result<(), EventLogError> {
        let framed = frame::framed_len(record.len());
        if self.active.as_ref().is_some_and(|a| a.records > 0 && a.len() + framed > self.cfg.segment_bytes) {
            self.rotate();
        }
        let mut active = match self.active.take() {
            Some(active) => active,
            None => self.create().map_err(|e| EventLogError::io("create a segment", &e))?,
        };
        let now = Instant::now();
        match self.injected().and_then(|()| active.append(record, now)) {
            Ok(()) => {
                self.active = Some(active);
                self.records += 1;
                self.bytes += framed;
                self.unflushed_since.get_or_insert(now);
                Ok(())
            }
            Err(e) => Err(self.fail(active, "write", e)),
        }
    }

    /// Flushes and fdatasyncs the active segment, then answers every waiter.
    fn commit(&mut self, now: Instant) {
        self.last_commit = Some(now);
        let Some(mut active) = self.active.take() else {
            // Nothing written since the segment failed: only syncs can be waiting.
            self.answer(Ok(()));
            return;
        };
        match self.injected().and_then(|()| active.commit()) {
            Ok(()) => {
                self.active = Some(active);
                self.committed();
            }
            Err(e) => {
                self.fail(active, "sync", e);
            }
        }
    }

    /// A successful sync: counts, then wakes the waiters (so that a woken caller sees
    /// its record counted).
    fn committed(&mut self) {
        self.publish();
        self.shared.stats.durable_commits.fetch_add(1, Ordering::Relaxed);
        self.uncommitted_lossy = 0;
        self.unflushed_since = None;
        self.answer(Ok(()));
    }

    fn flush(&mut self) {
        let Some(mut active) = self.active.take() else { return };
        match self.injected().and_then(|()| active.flush()) {
            Ok(()) => {
                self.active = Some(active);
                self.unflushed_since = None;
            }
            Err(e) => {
                self.fail(active, "flush", e);
            }
        }
    }

    /// Commits and closes the active segment and hands it to the closer; the next
    /// record opens a new one.
    fn rotate(&mut self) {
        let Some(mut active) = self.active.take() else { return };
        self.last_commit = Some(Instant::now());
        match self.injected().and_then(|()| active.commit()) {
            Ok(()) => {
                self.committed();
                self.shared.stats.segments_rotated.fetch_add(1, Ordering::Relaxed);
                self.closer.closed(active.seq);
            }
            Err(e) => {
                self.fail(active, "sync", e);
            }
        }
    }

    fn create(&mut self) -> io::Result<Active> {
        let now = Instant::now();
        if self.retry_at.is_some_and(|t| now < t) {
            return Err(io::Error::other("the last attempt to create a segment failed"));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        match Active::create(&self.cfg.dir, seq) {
            Ok(active) => {
                self.retry_at = None;
                Ok(active)
            }
            Err(e) => {
                self.shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("ctrbid: event log: {e}");
                let _ = std::fs::remove_file(super::segment::path(&self.cfg.dir, seq, false));
                self.retry_at = Some(now + RETRY);
                Err(e)
            }
        }
    }

    /// Gives up `active` after `e`: see the module doc. The error for the caller.
    fn fail(&mut self, active: Active, op: &'static str, e: io::Error) -> EventLogError {
        self.shared.stats.errors.fetch_add(1, Ordering::Relaxed);
        eprintln!("ctrbid: event log: {op} {}: {e}; the segment is closed at its last commit", active.path().display());
        let err = EventLogError::io(op, &e);
        let seq = active.seq;
        if active.abandon().is_some() {
            self.closer.closed(seq);
        }
        self.shared.stats.lost.fetch_add(self.uncommitted_lossy, Ordering::Relaxed);
        self.uncommitted_lossy = 0;
        self.unflushed_since = None;
        self.answer(Err(err.clone()));
        err
    }

    fn answer(&mut self, result: Result<(), EventLogError>) {
        for reply in self.pending.drain(..) {
            let _ = reply.send(result.clone());
        }
    }

    fn publish(&mut self) {
        let stats = &self.shared.stats;
        stats.appended.fetch_add(std::mem::take(&mut self.records), Ordering::Relaxed);
        stats.bytes.fetch_add(std::mem::take(&mut self.bytes), Ordering::Relaxed);
    }

    /// Commits, closes the active segment (removed when it holds no record), stops
    /// taking records, and waits for the closer to finish.
    fn finish(mut self) -> Result<(), EventLogError> {
        let result = match self.active.take() {
            Some(mut active) => match self.injected().and_then(|()| active.commit()) {
                Ok(()) => {
                    self.committed();
                    if active.records > 0 {
                        self.closer.closed(active.seq);
                    } else {
                        let path = active.path().to_path_buf();
                        drop(active);
                        let _ = std::fs::remove_file(path);
                    }
                    Ok(())
                }
                Err(e) => Err(self.fail(active, "sync", e)),
            },
            None => {
                self.answer(Ok(()));
                Ok(())
            }
        };
        // Appends that passed the capacity check before the close are refused: each
        // holds a slot until its message is taken, so all are in once every slot is back.
        self.shared.slots.close();
        let until = Instant::now() + STRAGGLERS;
        loop {
            let taken = self.rx.try_iter().map(|msg| refuse(msg, &self.shared)).count()
                + self.lossy.try_iter().map(|record| refuse(Msg::Lossy(record), &self.shared)).count();
            self.shared.slots.add_permits(taken);
            if self.shared.slots.available_permits() >= self.cfg.queue_capacity || Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        result
    }

    #[cfg(test)]
    fn injected(&mut self) -> io::Result<()> {
        if self.fail_writes == 0 {
            return Ok(());
        }
        self.fail_writes -= 1;
        Err(io::Error::other("injected failure"))
    }

    #[cfg(not(test))]
    fn injected(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Answers a message the closed log will not write.
fn refuse(msg: Msg, shared: &Shared) {
    match msg {
        Msg::Lossy(_) => {
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Msg::Durable(_, reply) | Msg::Sync(reply) | Msg::Close(reply) => {
            let _ = reply.send(Err(EventLogError::Closed));
        }
        Msg::Hook(_) => {}
    }
}
