//! Which notices have been applied: replay protection and billing idempotency.
//!
//! One entry per (notice kind, bid id) that was accepted, kept until the notice URL
//! itself expires: after that the signature check rejects the URL anyway, so the entry
//! can go. Entries are 24 bytes of key and value in a sharded `DashMap`; the number of
//! entries is bounded (`notices.max_entries`), and [`Ledger::sweep`] (run once a
//! second by the server) drops expired ones.
//!
//! Invariant: an (kind, bid) pair is applied at most once while its URL is valid;
//! [`Ledger::record`] is the only way in and it is atomic per key.

use super::Kind;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// First time: apply the notice.
    New,
    /// Seen before: do not apply again.
    Duplicate,
    /// The ledger is at its bound; the notice cannot be checked for replay.
    Full,
}

#[derive(Debug)]
pub struct Ledger {
    /// (kind, bid id) -> Unix second after which the entry may be dropped.
    seen: DashMap<(u8, u64), i64>,
    len: AtomicUsize,
    max_entries: usize,
}

impl Ledger {
    pub fn new(max_entries: usize) -> Ledger {
        Ledger { seen: DashMap::new(), len: AtomicUsize::new(0), max_entries }
    }

    /// Records the notice unless it was recorded before.
    pub fn record(&self, kind: Kind, bid: u64, expires: i64) -> Recorded {
        match self.seen.entry((kind as u8, bid)) {
            Entry::Occupied(_) => Recorded::Duplicate,
            Entry::Vacant(slot) => {
                // The bound is approximate under races by at most the number of shards.
                if self.len.load(Ordering::Relaxed) >= self.max_entries {
                    return Recorded::Full;
                }
                slot.insert(expires);
                self.len.fetch_add(1, Ordering::Relaxed);
                Recorded::New
            }
        }
    }

    /// Whether a notice of `kind` for `bid` is recorded.
    pub fn contains(&self, kind: Kind, bid: u64) -> bool {
        self.seen.contains_key(&(kind as u8, bid))
    }

    /// Takes back an entry [`Ledger::record`] made (its notice could not be applied).
    pub fn forget(&self, kind: Kind, bid: u64) {
        if self.seen.remove(&(kind as u8, bid)).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Drops entries whose URLs expired before `now`.
    pub fn sweep(&self, now: i64) {
        let mut removed = 0usize;
        self.seen.retain(|_, expires| {
            let keep = *expires >= now;
            removed += usize::from(!keep);
            keep
        });
        self.len.fetch_sub(removed, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_once_per_kind_and_bid_and_sweeps_expired() {
        let l = Ledger::new(3);
        assert_eq!(l.record(Kind::Win, 1, 100), Recorded::New);
        assert_eq!(l.record(Kind::Win, 1, 100), Recorded::Duplicate);
        assert_eq!(l.record(Kind::Bill, 1, 100), Recorded::New, "billing is its own notice");
        assert_eq!(l.record(Kind::Win, 2, 50), Recorded::New);
        assert_eq!(l.record(Kind::Win, 3, 100), Recorded::Full);
        l.sweep(60);
        assert_eq!(l.len(), 2);
        assert_eq!(l.record(Kind::Win, 3, 100), Recorded::New);
        assert_eq!(l.record(Kind::Win, 1, 100), Recorded::Duplicate, "unexpired entries stay");
    }
}
