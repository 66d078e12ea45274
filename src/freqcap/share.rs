//! A fleet's caps, divided: each instance may fill only its own share of every
//! (user, item)'s places, so instances that never ask each other cannot together pass
//! a cap.
//!
//! **Why a division, not a shared count.** A count kept fresh from Redis is always a
//! little old: two instances that each see a user one place below the cap can each
//! take that place, and a fleet behind a round-robin load balancer meets the same user
//! on every instance. Asking Redis before each bid would be exact, but puts a round
//! trip on the bid path. A division is exact with no call at all: the `N` places of a
//! cap are numbered, place `j` of a (user, item) belongs to the instance at rank
//! `(h + j) mod n` among the `n` live instances (`h` a hash of the pair, so that the
//! remainder places fall to different instances for different pairs), and each
//! instance counts only its own bids' impressions and holds against its share
//! ([`CapShare::cap`]). The shares of one (user, item) add up to `N` exactly.
//!
//! **What it costs.** A user whose requests reach one instance more than its share of
//! times sees fewer impressions than the cap allows; behind a load balancer that
//! spreads requests evenly (round robin, or a hash of the connection) a user who comes
//! back often meets every instance. Measured in `deploy/README.md#a-fleet`.
//!
//! **Where it can fail.** The division holds while every instance sees the same live
//! set. When an instance joins or leaves, the shares move: an instance whose share
//! grew cannot know what the places' former owner showed, so a (user, item) can pass
//! its cap by the places that moved, inside the window of that change (at most `N`;
//! none when membership is stable, and none for a restart under the same name, whose
//! snapshot keeps its counts). A joining instance takes no place until the others have
//! seen it ([`crate::fleet::members`]); while Redis is away nobody's view changes.

use super::FrequencyCap;

/// This instance's part of a fleet: `rank` in the sorted names of `members` live
/// instances. Packed in one `u32` so the bid path reads it with one atomic load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapShare {
    pub members: u16,
    pub rank: u16,
}

impl CapShare {
    /// One instance alone: every place is its own.
    pub const ALONE: CapShare = CapShare { members: 1, rank: 0 };

    /// A fleet instance that does not know the fleet yet (Redis has not answered since
    /// start, or the others have not seen it yet): no place is its own.
    pub const NONE: CapShare = CapShare { members: 0, rank: 0 };

    /// The cap this instance holds `user`'s `item` to: `cap` with as many impressions
    /// as its share has places (possibly none), the same window.
    #[inline]
    pub fn cap(self, user: u64, item: u32, cap: FrequencyCap) -> FrequencyCap {
        if self.members == 1 {
            return cap;
        }
        FrequencyCap { impressions: self.places(user, item, cap.impressions), window_s: cap.window_s }
    }

    /// How many of the `places` of (`user`, `item`) are this instance's: those `j` in
    /// `0..places` with `(h + j) mod members == rank`.
    #[inline]
    pub fn places(self, user: u64, item: u32, places: u32) -> u32 {
        let n = u32::from(self.members);
        if n == 0 || self.rank >= self.members {
            return 0;
        }
        let h = pair_hash(user, item) % n;
        // Place j is ours when j ≡ rank - h (mod n): the first is d, then every n-th.
        let d = (u32::from(self.rank) + n - h) % n;
        places / n + u32::from(d < places % n)
    }

    pub fn pack(self) -> u32 {
        u32::from(self.members) << 16 | u32::from(self.rank)
    }

    pub fn unpack(v: u32) -> CapShare {
        CapShare { members: (v >> 16) as u16, rank: v as u16 }
    }
}

/// Spreads pairs over ranks: the user key is already a hash, the item a hash too; one
/// multiply mixes them (not keyed: who owns a place is no secret, and no request can
/// choose more places than the cap).
#[inline]
fn pair_hash(user: u64, item: u32) -> u32 {
    let x = (user ^ u64::from(item).rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 32) as u32
}
