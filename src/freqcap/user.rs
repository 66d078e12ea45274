//! One user's capped history: the impressions of each capped item and the reservations
//! of bids in flight, in two short inline lists.
//!
//! A user with up to [`INLINE_SHOWN`] impressions (e.g. 2 items x 3) and one bid in
//! flight lives entirely in the map entry (104 bytes on 64-bit targets, checked by a
//! test); longer lists spill to the heap, and [`UserCaps::sweep`] moves them back
//! inline once they are short again. Every method runs under the user's shard lock, so
//! none of them needs to think about concurrency.

use super::{FrequencyCap, MAX_EVENTS, MAX_IMPRESSIONS};
use smallvec::SmallVec;

/// Impressions held inline before the list spills to the heap.
pub(super) const INLINE_SHOWN: usize = 6;
/// Reservations held inline before the list spills to the heap.
pub(super) const INLINE_HELD: usize = 1;

/// An impression of `item` at Unix second `at`. Ordered by (item, at).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Shown {
    pub item: u32,
    pub at: u32,
}

/// A reservation of `item` by bid `bid`, live up to and including Unix second `expires`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hold {
    pub bid: u64,
    pub item: u32,
    pub expires: u32,
}

/// Why [`UserCaps::reserve`] said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The cap is reached.
    Capped,
    /// The user holds [`MAX_EVENTS`] impressions and reservations.
    UserFull,
}

/// Invariants: `shown` is sorted by (item, at) and holds at most [`MAX_IMPRESSIONS`]
/// impressions per item, the newest; `held` holds at most one reservation per (item,
/// bid), in no particular order; `shown.len() + held.len() <= MAX_EVENTS`; `mask` has
/// the [`bit`] of every item in either list set (and perhaps of items gone since: it is
/// exact again after [`UserCaps::sweep`]).
#[derive(Debug, Default, Clone)]
pub(super) struct UserCaps {
    /// A one-word filter: most candidates' items are not the user's, and one AND tells.
    mask: u64,
    shown: SmallVec<[Shown; INLINE_SHOWN]>,
    held: SmallVec<[Hold; INLINE_HELD]>,
}

/// An item's bit in [`UserCaps::mask`] (items are hashes: their low bits are uniform).
#[inline]
fn bit(item: u32) -> u64 {
    1 << (item % 64)
}

/// A Unix second as stored: clamped to `u32` (1970 to 2106).
pub(super) fn secs(t: i64) -> u32 {
    t.clamp(0, i64::from(u32::MAX)) as u32
}

impl UserCaps {
    /// Impressions of `item` within `(now - window_s, ...]` plus its reservations live at
    /// `now`. An impression stamped after `now` (a notice handled ahead of a request
    /// timed earlier) counts too: erring towards the cap.
    #[inline]
    pub fn used(&self, item: u32, cap: FrequencyCap, now: i64) -> u32 {
        if self.mask & bit(item) == 0 {
            return 0;
        }
        let after = now - i64::from(cap.window_s);
        // `shown` is sorted by (item, at): the item's impressions are one run, found by
        // binary search (a heavy user holds hundreds; the bid path asks per candidate).
        let first = self.shown.partition_point(|s| s.item < item);
        let run = &self.shown[first..];
        let run = &run[..run.partition_point(|s| s.item == item)];
        let shown = run.iter().filter(|s| i64::from(s.at) > after).count();
        let held = self.held.iter().filter(|h| h.item == item && i64::from(h.expires) >= now).count();
        (shown + held) as u32
    }

    #[inline]
    pub fn allows(&self, item: u32, cap: FrequencyCap, now: i64) -> bool {
        self.used(item, cap, now) < cap.impressions
    }

    /// Reserves a slot of `item` for `bid` unless the cap is reached or the user is
    /// full. Reserving a (item, bid) already reserved succeeds without a second slot.
    /// Drops the user's lapsed reservations on the way.
    pub fn reserve(&mut self, item: u32, cap: FrequencyCap, bid: u64, expires: i64, now: i64) -> Result<(), Refusal> {
        self.held.retain(|h| i64::from(h.expires) >= now);
        if self.held.iter().any(|h| h.item == item && h.bid == bid) {
            return Ok(());
        }
        if !self.allows(item, cap, now) {
            return Err(Refusal::Capped);
        }
        if self.len() >= MAX_EVENTS {
            return Err(Refusal::UserFull);
        }
        self.held.push(Hold { bid, item, expires: secs(expires) });
        self.mask |= bit(item);
        Ok(())
    }

    /// Records an impression of `item` at `ts`, in place of `bid`'s reservation if it
    /// has one. False when nothing could be recorded (no reservation, and the user's
    /// lists are full of reservations).
    pub fn won(&mut self, item: u32, bid: u64, ts: i64) -> bool {
        if let Some(i) = self.held.iter().position(|h| h.item == item && h.bid == bid) {
            self.held.swap_remove(i);
        } else if self.len() >= MAX_EVENTS {
            // Make room: the user's oldest impression goes (the only way a count can
            // fall short, for a user with MAX_EVENTS events inside the longest window).
            let Some(oldest) = self.shown.iter().enumerate().min_by_key(|(_, s)| s.at).map(|(i, _)| i) else {
                return false;
            };
            self.shown.remove(oldest);
        }
        let new = Shown { item, at: secs(ts) };
        let at = self.shown.partition_point(|s| *s <= new);
        self.shown.insert(at, new);
        self.mask |= bit(item);
        let first = self.shown.partition_point(|s| s.item < item);
        let end = self.shown.partition_point(|s| s.item <= item);
        if end - first > MAX_IMPRESSIONS as usize {
            self.shown.remove(first);
        }
        true
    }

    /// Drops `bid`'s reservation of `item`; false if there was none.
    pub fn lost(&mut self, item: u32, bid: u64) -> bool {
        let Some(i) = self.held.iter().position(|h| h.item == item && h.bid == bid) else { return false };
        self.held.swap_remove(i);
        true
    }

    /// Drops reservations lapsed at `now` and impressions at or before `after` (outside
    /// every window), and moves short lists back inline.
    pub fn sweep(&mut self, now: i64, after: i64) {
        self.held.retain(|h| i64::from(h.expires) >= now);
        self.shown.retain(|s| i64::from(s.at) > after);
        self.mask =
            self.shown.iter().map(|s| bit(s.item)).chain(self.held.iter().map(|h| bit(h.item))).fold(0, |m, b| m | b);
        if self.held.spilled() && self.held.len() <= INLINE_HELD {
            self.held.shrink_to_fit();
        }
        if self.shown.spilled() && self.shown.len() <= INLINE_SHOWN {
            self.shown.shrink_to_fit();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.shown.is_empty() && self.held.is_empty()
    }

    /// Impressions and reservations together.
    pub fn len(&self) -> usize {
        self.shown.len() + self.held.len()
    }

    pub fn reservations(&self) -> usize {
        self.held.len()
    }

    /// Distinct items with an impression or a reservation.
    pub fn items(&self) -> usize {
        let runs = self.shown.chunk_by(|a, b| a.item == b.item).count();
        let held_only = self
            .held
            .iter()
            .enumerate()
            .filter(|&(i, h)| {
                self.shown.binary_search_by_key(&h.item, |s| s.item).is_err()
                    && !self.held[..i].iter().any(|e| e.item == h.item)
            })
            .count();
        runs + held_only
    }

    /// Bytes of heap the lists have spilled to.
    pub fn heap_bytes(&self) -> usize {
        let shown = if self.shown.spilled() { self.shown.capacity() * size_of::<Shown>() } else { 0 };
        let held = if self.held.spilled() { self.held.capacity() * size_of::<Hold>() } else { 0 };
        shown + held
    }

    pub fn shown(&self) -> &[Shown] {
        &self.shown
    }

    pub fn held(&self) -> &[Hold] {
        &self.held
    }

    /// A user from a snapshot's lists, held to the bounds `won` keeps: the newest
    /// [`MAX_IMPRESSIONS`] per item, and no more than [`MAX_EVENTS`] events (the newest
    /// impressions, after the reservations).
    pub fn from_lists(shown: impl IntoIterator<Item = Shown>, held: impl IntoIterator<Item = Hold>) -> UserCaps {
        let mut u = UserCaps::default();
        for h in held {
            if u.held.len() < MAX_EVENTS && !u.held.iter().any(|e| e.item == h.item && e.bid == h.bid) {
                u.held.push(h);
                u.mask |= bit(h.item);
            }
        }
        let mut shown: Vec<Shown> = shown.into_iter().collect();
        shown.sort_unstable_by_key(|s| std::cmp::Reverse(s.at));
        for s in shown {
            let per_item = u.shown.iter().filter(|e| e.item == s.item).count();
            if u.len() < MAX_EVENTS && per_item < MAX_IMPRESSIONS as usize {
                let at = u.shown.partition_point(|e| *e <= s);
                u.shown.insert(at, s);
                u.mask |= bit(s.item);
            }
        }
        u
    }
}
