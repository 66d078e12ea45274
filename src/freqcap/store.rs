//! [`CapStore`]: every tracked user's capped history, in a sharded `DashMap`.
//!
//! Concurrency contract: every call locks one shard of the map for the few
//! microseconds it takes to read or change one user (a read lock for [`CapStore::user`]
//! and [`CapStore::allows`], a write lock otherwise); [`CapStore::sweep`] and
//! [`CapStore::snapshot`] visit the shards one after the other. No lock outlives its
//! call: a [`UserView`] is a copy of the user's entry.
//!
//! Capacity: at most `max_users` users. A new user beyond that is not tracked: its
//! reservations are refused (no bid of a capped item to a user the store cannot count,
//! so no cap is ever exceeded for want of room) and its wins are not recorded; both are
//! counted. Nothing is evicted: users leave when [`CapStore::sweep`] finds nothing left
//! inside the longest window, which frees room at the pace the windows slide.

use super::user::{Refusal, UserCaps};
use super::FrequencyCap;
use dashmap::mapref::entry::Entry;
use dashmap::mapref::one::RefMut;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Per-user frequency-cap state; see the module docs for the concurrency contract.
///
/// Keys go through the map's default keyed hasher (SipHash with a per-process key), not
/// an identity hash of the already hashed user key: user ids come from requests, and a
/// fixed public hash would let a sender pick ids that pile into one bucket. It costs one
/// hash per call, not one per candidate.
#[derive(Debug)]
pub struct CapStore {
    users: DashMap<u64, UserCaps>,
    /// Entries in `users`; never above `max_users` (reserved before an insert, given
    /// back if the insert does not happen).
    len: AtomicUsize,
    max_users: usize,
    /// Reservations refused for room: the store or the user was full.
    refused: AtomicU64,
    /// Wins not recorded for room.
    untracked: AtomicU64,
    /// The last sweep's census: items, live reservations, spilled heap bytes.
    items: AtomicUsize,
    reservations: AtomicUsize,
    heap_bytes: AtomicUsize,
}

/// What [`CapStore::stats`] reports; `items`, `reservations` and the heap part of
/// `bytes_per_user` are as of the last [`CapStore::sweep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapStats {
    /// Users tracked now.
    pub users: usize,
    /// (user, item) pairs with an impression or a reservation.
    pub items: usize,
    /// Reservations live.
    pub reservations: usize,
    /// Reservations refused because the store (`max_users`) or the user
    /// ([`super::MAX_EVENTS`]) was full, since the start. Monotonic.
    pub refused: u64,
    /// Wins not recorded because the store was full, since the start. Monotonic.
    pub untracked: u64,
    /// Estimated bytes per tracked user: the map's buckets (key, value and one control
    /// byte each, at the table's capacity) and the lists' spilled heap, over the users.
    pub bytes_per_user: usize,
}

/// One user's entry: the bid path checks all its candidates against one lookup. An
/// unknown user allows everything.
///
/// It is a copy of the entry, taken under the shard's read lock and released at once:
/// selection runs for tens of microseconds, and a lock held that long would stall the
/// notice handlers writing to the same shard. A typical user's entry is inline (no
/// allocation); a heavy user's spilled lists are copied.
pub struct UserView {
    caps: Option<UserCaps>,
}

impl UserView {
    /// Whether `item` may be shown at `now` under `cap`: as [`CapStore::allows`].
    #[inline]
    pub fn allows(&self, item: u32, cap: FrequencyCap, now: i64) -> bool {
        self.caps.as_ref().is_none_or(|u| u.allows(item, cap, now))
    }

    /// Whether the store tracks this user.
    pub fn is_tracked(&self) -> bool {
        self.caps.is_some()
    }
}

impl CapStore {
    pub fn new(max_users: usize) -> CapStore {
        CapStore {
            users: DashMap::new(),
            len: AtomicUsize::new(0),
            max_users,
            refused: AtomicU64::new(0),
            untracked: AtomicU64::new(0),
            items: AtomicUsize::new(0),
            reservations: AtomicUsize::new(0),
            heap_bytes: AtomicUsize::new(0),
        }
    }

    /// One lookup per request: the user's entry, to check every candidate against.
    pub fn user(&self, user: u64) -> UserView {
        UserView { caps: self.users.get(&user).map(|u| u.clone()) }
    }

    /// Whether `item` may be shown to `user` at `now` (Unix s) under `cap`: impressions
    /// of the item to the user within `(now - window_s, now]` (and any stamped after
    /// `now`) plus reservations live at `now` are fewer than `cap.impressions`.
    pub fn allows(&self, user: u64, item: u32, cap: FrequencyCap, now: i64) -> bool {
        self.user(user).allows(item, cap, now)
    }

    /// Reserves a slot of `item` for bid `bid` until Unix second `expires` (inclusive;
    /// after it the reservation lapses by itself): true and reserved when allowed, false
    /// with nothing reserved when the cap is reached or there is no room (counted).
    /// Check and reservation are atomic under the user's shard lock.
    #[must_use]
    pub fn reserve(&self, user: u64, item: u32, cap: FrequencyCap, bid: u64, expires: i64, now: i64) -> bool {
        if cap.impressions == 0 {
            return false;
        }
        let Some(mut caps) = self.entry(user) else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        match caps.reserve(item, cap, bid, expires, now) {
            Ok(()) => true,
            Err(Refusal::Capped) => false,
            Err(Refusal::UserFull) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Bid `bid` won, an impression of `item` at `ts`: its reservation becomes the
    /// impression; without one (an uncapped bid, or one reserved before a restart) the
    /// impression is recorded all the same. Duplicate notices are the caller's to drop
    /// (`notice::Ledger`): each call records one impression.
    pub fn won(&self, user: u64, item: u32, bid: u64, ts: i64) {
        let recorded = self.entry(user).is_some_and(|mut caps| caps.won(item, bid, ts));
        if !recorded {
            self.untracked.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Bid `bid` lost: its reservation of `item` is dropped. Unknown bids: nothing.
    pub fn lost(&self, user: u64, item: u32, bid: u64) {
        if let Some(mut caps) = self.users.get_mut(&user) {
            caps.lost(item, bid);
        }
    }

    /// Housekeeping, about once a second with the auction clock: drops reservations
    /// lapsed at `now`, impressions at or before `now - max_window_s` (the longest
    /// window of any cap in the catalog: older ones are outside every window), and users
    /// left with nothing; takes the census [`CapStore::stats`] reports. Each shard is
    /// write-locked in turn while its users are visited (no bench measures that pause
    /// yet). The map keeps its capacity (bounded by `max_users`): shrinking would rehash
    /// under the lock.
    pub fn sweep(&self, now: i64, max_window_s: u32) {
        let after = now - i64::from(max_window_s);
        let (mut removed, mut items, mut reservations, mut heap_bytes) = (0, 0, 0, 0);
        self.users.retain(|_, caps| {
            caps.sweep(now, after);
            if caps.is_empty() {
                removed += 1;
                return false;
            }
            items += caps.items();
            reservations += caps.reservations();
            heap_bytes += caps.heap_bytes();
            true
        });
        self.len.fetch_sub(removed, Ordering::Relaxed);
        self.items.store(items, Ordering::Relaxed);
        self.reservations.store(reservations, Ordering::Relaxed);
        self.heap_bytes.store(heap_bytes, Ordering::Relaxed);
    }

    pub fn stats(&self) -> CapStats {
        let users = self.len.load(Ordering::Relaxed);
        // hashbrown keeps 8 buckets for every 7 entries of capacity.
        let entry = size_of::<(u64, UserCaps)>() + 1;
        let table = self.users.capacity() * 8 / 7 * entry;
        CapStats {
            users,
            items: self.items.load(Ordering::Relaxed),
            reservations: self.reservations.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            untracked: self.untracked.load(Ordering::Relaxed),
            bytes_per_user: (table + self.heap_bytes.load(Ordering::Relaxed)).checked_div(users).unwrap_or(0),
        }
    }

    /// The user's entry, write-locked, inserted empty if new and there is room.
    ///
    /// A known user goes through `get_mut`, not `entry`: `entry` makes room for an insert
    /// before it looks (hashbrown's `find_or_find_insert_slot`), so on a shard at its
    /// load limit it would grow the table, allocating and rehashing under the lock, for
    /// a user already there.
    fn entry(&self, user: u64) -> Option<RefMut<'_, u64, UserCaps>> {
        if let Some(caps) = self.users.get_mut(&user) {
            return Some(caps);
        }
        match self.users.entry(user) {
            Entry::Occupied(caps) => Some(caps.into_ref()),
            Entry::Vacant(slot) => self.take_room().then(|| slot.insert(UserCaps::default())),
        }
    }

    /// Counts one more user if there is room for it.
    fn take_room(&self) -> bool {
        if self.len.fetch_add(1, Ordering::Relaxed) < self.max_users {
            return true;
        }
        self.len.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// Puts `caps` in place of `user`'s entry (room permitting); false if not.
    pub(super) fn put(&self, user: u64, caps: UserCaps) -> bool {
        match self.users.entry(user) {
            Entry::Occupied(mut old) => {
                old.insert(caps);
                true
            }
            Entry::Vacant(slot) => {
                let room = self.take_room();
                if room {
                    slot.insert(caps);
                }
                room
            }
        }
    }

    /// Every user's entry, shard by shard.
    pub(super) fn for_each(&self, mut f: impl FnMut(u64, &UserCaps)) {
        for r in self.users.iter() {
            f(*r.key(), r.value());
        }
    }
}
