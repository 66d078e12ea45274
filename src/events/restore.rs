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
//!
//! The aggregates ([`aggregates`]) are rebuilt from every segment: the notices that
//! counted in them carry their sequence numbers ([`super::record::AggStamp`]), as do
//! the events other instances of a fleet counted ([`super::CountedRecord`]), and
//! applying them in that order gives back the store the bidder had.

use super::{Event, NoticeKind, NoticeRecord};
use crate::aggregates::{AggEvent, AggregateStore, Audience, EntityKeys, Outcome};
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
            Ok(Event::Bid(_) | Event::Shadow(_) | Event::Counted(_)) => {}
            Err(_) => restored.unreadable += 1,
        }
    }
    restored.elapsed = started.elapsed();
    Ok(restored)
}

/// What rebuilding the aggregates read and applied.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RebuiltAggregates {
    pub records: u64,
    /// Stamped notices applied, in sequence order.
    pub events: u64,
    /// Sequence numbers missing between the first and the last stamp (notices applied
    /// but never logged: a failed write, or segments removed by retention).
    pub gaps: u64,
    pub unreadable: u64,
    pub elapsed: Duration,
}

/// Rebuilds `store` (empty) from every stamped notice of the log in `dir`, in the order
/// of their sequence numbers, so that it holds what the bidder's store held when it
/// stopped, and its next event takes the next sequence number. Every segment is read:
/// the aggregates' longest half-life is a week, longer than any notice horizon.
pub fn aggregates(dir: &Path, store: &AggregateStore) -> anyhow::Result<RebuiltAggregates> {
    let started = Instant::now();
    let reader =
        Reader::open(dir).with_context(|| format!("rebuilding the aggregates from the event log {}", dir.display()))?;
    let mut out = RebuiltAggregates::default();
    let mut stamped: Vec<(u64, AggEvent)> = Vec::new();
    for record in reader {
        let record = record.with_context(|| {
            format!(
                "rebuilding the aggregates from the event log {}: move the damaged segment out of the directory \
                 to start without its records",
                dir.display()
            )
        })?;
        out.records += 1;
        match Event::decode(&record.data) {
            Ok(Event::Notice(n)) => {
                if let Some(e) = agg_event(&n) {
                    stamped.push(e);
                }
            }
            Ok(Event::Counted(c)) => stamped.push(counted_event(&c)),
            Ok(Event::Bid(_) | Event::Shadow(_)) => {}
            Err(_) => out.unreadable += 1,
        }
    }
    stamped.sort_by_key(|(seq, _)| *seq);
    for (seq, event) in &stamped {
        let next = store.next_seq();
        if *seq < next {
            continue; // the same stamp twice (a record the log holds twice): applied once
        }
        out.gaps += seq - next;
        store.skip_to(*seq);
        store.apply(event);
        out.events += 1;
    }
    out.elapsed = started.elapsed();
    Ok(out)
}

/// The aggregate event a stamped notice applied, with its sequence number; `None` for a
/// notice without a stamp.
pub fn agg_event(n: &NoticeRecord<'_>) -> Option<(u64, AggEvent)> {
    let stamp = n.agg?;
    let outcome = match n.kind {
        NoticeKind::Win | NoticeKind::Bill => Outcome::Impression,
        NoticeKind::Click => Outcome::Click,
        NoticeKind::Conv => Outcome::Conversion,
        NoticeKind::Loss => return None,
    };
    let audience = Audience { user: stamp.user, publisher: stamp.publisher };
    let keys = EntityKeys::of(audience, n.campaign, n.creative, stamp.category);
    Some((stamp.seq, AggEvent { ts_s: crate::clock::unix_s(n.ts_ms), outcome, keys }))
}

/// The aggregate event a counted record applied, with its sequence number.
pub fn counted_event(c: &super::CountedRecord<'_>) -> (u64, AggEvent) {
    let audience = Audience { user: c.stamp.user, publisher: c.stamp.publisher };
    let keys = EntityKeys::of(audience, c.campaign, c.creative, c.stamp.category);
    (c.stamp.seq, AggEvent { ts_s: crate::clock::unix_s(c.ts_ms), outcome: c.outcome, keys })
}
