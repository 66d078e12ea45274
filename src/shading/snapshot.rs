//! Snapshots: every level's window and published fit, so that a restarted bidder bids
//! as the stopped one did instead of starting cold. Bounded like the [`Shader`]
//! itself: at most `max_contexts` contexts and parents, each with at most `reservoir`
//! observations. Levels are copied one at a time while notices may still arrive, so a
//! snapshot is consistent per level, not across levels.

use super::estimate::{Fit, Obs, Ring};
use super::level::Level;
use super::Shader;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadingSnapshot {
    pub global: LevelSnapshot,
    /// Sorted by key.
    pub parents: Vec<(u64, LevelSnapshot)>,
    /// Sorted by key.
    pub contexts: Vec<(u64, LevelSnapshot)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelSnapshot {
    /// Observations the level has ever taken (its refit schedule counts them).
    pub seen: u64,
    /// The published fit, if any.
    pub fit: Option<FitSnapshot>,
    /// The window, oldest first.
    pub window: Vec<Obs>,
}

/// A published fit. `mu` and `sigma` are the published `f32`s, widened exactly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FitSnapshot {
    pub mu: f64,
    pub sigma: f64,
    pub weight: u32,
}

impl Level {
    fn snapshot(&self) -> LevelSnapshot {
        let window = self.lock();
        let fit = self.published().map(|p| FitSnapshot { mu: p.mu, sigma: p.sigma, weight: p.weight });
        LevelSnapshot { seen: window.seen, fit, window: window.ring.oldest_first() }
    }

    /// Replaces this level's window and fit with the snapshot's (its newest
    /// `capacity` observations).
    fn restore(&self, s: &LevelSnapshot, capacity: usize) {
        let mut window = self.lock();
        window.ring = Ring::from_oldest_first(capacity, &s.window);
        window.seen = s.seen;
        match s.fit {
            Some(f) => self.publish(Fit { mu: f.mu, sigma: f.sigma }, f.weight),
            None => self.unpublish(),
        }
    }
}

fn sorted(map: &DashMap<u64, Arc<Level>>) -> Vec<(u64, LevelSnapshot)> {
    let mut levels: Vec<_> = map.iter().map(|e| (*e.key(), Arc::clone(e.value()))).collect();
    levels.sort_unstable_by_key(|(key, _)| *key);
    levels.into_iter().map(|(key, level)| (key, level.snapshot())).collect()
}

impl Shader {
    pub fn snapshot(&self) -> ShadingSnapshot {
        ShadingSnapshot {
            global: self.global.snapshot(),
            parents: sorted(&self.parents),
            contexts: sorted(&self.contexts),
        }
    }

    /// Restores the levels of a snapshot, replacing those with the same keys; levels
    /// beyond `max_contexts` are left out (counted nowhere: a snapshot from a bidder
    /// with a larger bound).
    pub fn restore(&self, s: ShadingSnapshot) {
        let capacity = self.settings.reservoir;
        self.global.restore(&s.global, capacity);
        for (levels, map, slots) in
            [(&s.parents, &self.parents, &self.parent_slots), (&s.contexts, &self.contexts, &self.context_slots)]
        {
            for (key, snap) in levels {
                if let Some(level) = self.level(map, slots, *key) {
                    level.restore(snap, capacity);
                }
            }
        }
    }
}
