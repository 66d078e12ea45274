//! Reading the notices back at start-up, so that what was applied before a restart stays
//! applied after it: the notice ledger (a billing notice replayed after a restart is a
//! duplicate, not a second charge; a loss after a win from before the restart still
//! contradicts it) and each campaign's spend today (a campaign at its daily budget stays
//! stopped).
//!
//! Every notice record in the log is a notice that was applied: the bidder writes it,
//! durably, before applying and answering it ([`super::sink`]). A record written and
//! then refused with 503 (the sync failed) may be followed by the exchange's retry, a
//! second record of the same notice; the ledger takes the first and the second is a
//! duplicate that adds nothing, as it was live.
//!
//! Only records still relevant are needed: a notice URL, a click URL and a conversion's
//! attribution window all end, and spend counts one UTC day. With the system clock,
//! segments last modified before that horizon are not read at all
//! ([`crate::eventlog::Reader::open_since`]); with the simulation clock (whose times are
//! the records', not the files') every segment is read.

use super::{Event, NoticeRecord};
use crate::eventlog::Reader;
use anyhow::Context as _;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// What a restore read and kept.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Restored {
    pub records: u64,
    pub notices: u64,
    /// Records of a format this build does not read (a newer version's): skipped.
    pub unreadable: u64,
    pub segments_skipped: usize,
    pub elapsed: Duration,
}

/// Feeds every notice record of the log in `dir` to `apply`, oldest first; with
/// `since`, only from segments written since then. A damaged segment stops start-up
/// with its file and offset: starting without the notices it holds could charge a
/// billing notice twice.
pub fn notices(
    dir: &Path,
    since: Option<SystemTime>,
    mut apply: impl FnMut(&NoticeRecord<'_>),
) -> anyhow::Result<Restored> {
    let started = Instant::now();
    let reader = match since {
        Some(t) => Reader::open_since(dir, t),
        None => Reader::open(dir),
    }
    .with_context(|| format!("restoring notices from the event log {}", dir.display()))?;
    let mut restored = Restored { segments_skipped: reader.skipped(), ..Restored::default() };
    for record in reader {
        let record = record.with_context(|| {
            format!(
                "restoring notices from the event log {}: move the damaged segment out of the directory to start \
                 without its records (its billing notices could then be charged again)",
                dir.display()
            )
        })?;
        restored.records += 1;
        match Event::decode(&record.data) {
            Ok(Event::Notice(n)) => {
                restored.notices += 1;
                apply(&n);
            }
            Ok(Event::Bid(_)) => {}
            Err(_) => restored.unreadable += 1,
        }
    }
    restored.elapsed = started.elapsed();
    Ok(restored)
}
