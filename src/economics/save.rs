//! The economics state file: what pacing, frequency caps and shading have learnt and
//! hold, saved as one JSON document and read back at start.
//!
//! Written whole to a temporary file and renamed over the old one, so a crash leaves
//! the previous save or the new one, never half of one. Today's spend is not in it:
//! the event log is the record of money (`crate::events::restore`); the state file
//! holds what the event log cannot rebuild (each campaign's traffic profile and
//! controller, the bids in flight and their holds).

use super::inflight::SavedBid;
use super::pacing::Controlled;
use super::Economics;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// Bumped when a change makes older files unreadable.
const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    pub version: u32,
    /// Auction time of the save, Unix s, when the clock had one.
    pub saved_at: Option<i64>,
    pub campaigns: Vec<SavedPace>,
    pub bids: Vec<SavedBid>,
    /// Frequency-cap counts and places held.
    #[serde(default)]
    pub caps: Option<crate::freqcap::CapSnapshot>,
    /// The learnt first-price landscapes.
    #[serde(default)]
    pub shading: Option<crate::shading::ShadingSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPace {
    pub campaign: String,
    pub rate: f64,
    pub controlled: Controlled,
}

/// What a restore took back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    pub campaigns: usize,
    pub bids: usize,
}

impl Economics {
    pub fn saved_state(&self, now: Option<i64>) -> SavedState {
        let mut campaigns: Vec<SavedPace> = self
            .paces
            .iter()
            .map(|p| SavedPace {
                campaign: p.id.to_string(),
                rate: p.rate(),
                controlled: p.ctl.lock().map(|g| g.clone()).unwrap_or_default(),
            })
            .collect();
        campaigns.sort_by(|a, b| a.campaign.cmp(&b.campaign));
        let shading = Some(self.pricer.shader().snapshot());
        let caps = Some(self.caps.snapshot());
        SavedState { version: VERSION, saved_at: now, campaigns, bids: self.bids.save(), caps, shading }
    }

    /// Takes back a saved state into the campaigns already attached (a campaign the
    /// catalog no longer has is dropped, with its bids' holds).
    pub fn restore_state(&self, s: SavedState) -> Restored {
        let mut restored = Restored::default();
        for p in s.campaigns {
            if let Some(pace) = self.paces.get(p.campaign.as_str()) {
                pace.set_rate(p.rate);
                if let Ok(mut g) = pace.ctl.lock() {
                    *g = p.controlled;
                }
                restored.campaigns += 1;
            }
        }
        restored.bids = self.bids.restore(s.bids, |id| self.paces.get(id).map(|p| Arc::clone(&p)));
        if let Some(caps) = s.caps {
            self.caps.restore(caps);
        }
        if let Some(shading) = s.shading {
            self.pricer.shader().restore(shading);
        }
        restored
    }

    /// Writes the state to `path` (through `path.tmp` and a rename).
    pub fn save_to(&self, path: &Path, now: Option<i64>) -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_vec(&self.saved_state(now))?;
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(())
    }
}

/// Reads a state file; `None` when there is none yet. A file that cannot be read or
/// parsed is an error naming it (start-up stops rather than forget the holds).
pub fn load(path: &Path) -> anyhow::Result<Option<SavedState>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading the economics state {}", path.display())),
    };
    let state: SavedState = serde_json::from_slice(&text)
        .with_context(|| format!("the economics state {} is not a state file of this version", path.display()))?;
    anyhow::ensure!(
        state.version == VERSION,
        "the economics state {} is version {}, this bidder reads {VERSION}",
        path.display(),
        state.version
    );
    Ok(Some(state))
}
