//! [`CapSnapshot`]: the store as plain data (serde), written at shutdown and read back
//! at start-up so that a restart neither forgets impressions nor lets reserved bids
//! through twice.
//!
//! Users are in ascending key order and each user's lists in the store's order, so
//! snapshotting the same state gives the same bytes. Restoring holds every user to the
//! store's bounds, whatever the snapshot says.

use super::user::{Hold, Shown, UserCaps};
use super::CapStore;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapSnapshot {
    pub users: Vec<UserSnapshot>,
}

/// One user: times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSnapshot {
    /// The [`super::user_key`].
    pub user: u64,
    /// Impressions: (item, at).
    pub shown: Vec<(u32, u32)>,
    /// Reservations: (item, bid, expires).
    pub held: Vec<(u32, u64, u32)>,
}

impl CapStore {
    /// Every user's impressions and reservations (lapsed or not: [`CapStore::restore`]
    /// and the next sweep sort that out). Visits the shards one after the other; each
    /// user is consistent, the whole is not one instant.
    pub fn snapshot(&self) -> CapSnapshot {
        let mut users = Vec::new();
        self.for_each(|user, caps| {
            users.push(UserSnapshot {
                user,
                shown: caps.shown().iter().map(|s| (s.item, s.at)).collect(),
                held: caps.held().iter().map(|h| (h.item, h.bid, h.expires)).collect(),
            })
        });
        users.sort_unstable_by_key(|u| u.user);
        CapSnapshot { users }
    }

    /// Puts the snapshot's users in place of the store's entries for the same users
    /// (others are kept), room permitting; returns how many were restored. Restore into
    /// a new store at start-up, then sweep.
    pub fn restore(&self, s: CapSnapshot) -> usize {
        let mut restored = 0;
        for u in s.users {
            let shown = u.shown.into_iter().map(|(item, at)| Shown { item, at });
            let held = u.held.into_iter().map(|(item, bid, expires)| Hold { bid, item, expires });
            let caps = UserCaps::from_lists(shown, held);
            if !caps.is_empty() && u.user != 0 {
                restored += usize::from(self.put(u.user, caps));
            }
        }
        restored
    }
}
