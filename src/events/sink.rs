//! The bidder's side of the event log: sampled bid records that never wait, and notice
//! records that are durable before the notice is answered.
//!
//! **The bid path never waits on disk.** A bid record is encoded on the worker and
//! handed to the log's bounded queue; when the queue is full the record is dropped and
//! counted (`ctrbid_events_bids_total{outcome="dropped"}`), and the request goes on.
//! Which bids are written is a pure function of the bid id ([`EventSink::sampled`]),
//! so every instance and every replay samples the same bids.
//!
//! **Money is never dropped.** Win, billing, loss, click and conversion records go
//! through [`EventSink::notice`], which returns only once the record is on disk (group
//! commit); the notice is answered only after that ([`crate::bidder::Bidder::notice`]).

use super::{BidRecord, CountedRecord, Event, NoticeRecord, ShadowRecord};
use crate::clock::ClockMode;
use crate::config::EventsConfig;
use crate::eventlog::{EventLog, EventLogConfig, EventLogError};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bid records' sampling share with the system clock when `events.bid_sample` is unset.
pub const PRODUCTION_BID_SAMPLE: f64 = 0.1;

pub struct EventSink {
    log: EventLog,
    /// A bid is written when the mix of its id is below this (`bid_sample` x 2^64).
    sample_below: u64,
    bids_written: AtomicU64,
    bids_dropped: AtomicU64,
    shadows_written: AtomicU64,
    shadows_dropped: AtomicU64,
    notices_written: AtomicU64,
    notices_failed: AtomicU64,
    counted_written: AtomicU64,
    counted_dropped: AtomicU64,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink").field("sample_below", &self.sample_below).finish_non_exhaustive()
    }
}

impl EventSink {
    /// Opens the log in `cfg.dir` (recovering a torn tail from a crash); `Ok(None)` when
    /// the event log is off (no `events.dir`).
    pub fn open(cfg: &EventsConfig, clock: ClockMode) -> anyhow::Result<Option<EventSink>> {
        let Some(dir) = &cfg.dir else { return Ok(None) };
        let log = EventLog::open(EventLogConfig {
            segment_bytes: cfg.segment_mb * (1 << 20),
            segment_max_age: Duration::from_secs(cfg.segment_max_age_s),
            commit_interval: Duration::from_micros(cfg.commit_interval_us),
            queue_capacity: cfg.queue_capacity,
            retention_bytes: (cfg.retention_gb * (1u64 << 30) as f64) as u64,
            ..EventLogConfig::new(dir.clone())
        })?;
        Ok(Some(EventSink {
            log,
            sample_below: sample_threshold(cfg.bid_sample(clock)),
            bids_written: AtomicU64::new(0),
            bids_dropped: AtomicU64::new(0),
            shadows_written: AtomicU64::new(0),
            shadows_dropped: AtomicU64::new(0),
            notices_written: AtomicU64::new(0),
            notices_failed: AtomicU64::new(0),
            counted_written: AtomicU64::new(0),
            counted_dropped: AtomicU64::new(0),
        }))
    }

    /// The log itself (its counters; fault drills).
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Whether bid `bid`'s record is written.
    pub fn sampled(&self, bid: u64) -> bool {
        self.sample_below == u64::MAX || mix(bid) < self.sample_below
    }

    /// Hands a shadow variant's prediction for a logged bid to the log; never waits (a
    /// full queue drops it, counted).
    pub fn shadow(&self, record: ShadowRecord<'_>) {
        let bytes = Event::Shadow(record).to_bytes();
        let counter = if self.log.append(bytes) { &self.shadows_written } else { &self.shadows_dropped };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Hands a bid record to the log; never waits (a full queue drops it, counted).
    pub fn bid(&self, record: BidRecord<'_>) {
        let bytes = Event::Bid(record).to_bytes();
        let counter = if self.log.append(bytes) { &self.bids_written } else { &self.bids_dropped };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Hands an event another instance counted to the log; never waits (a full queue
    /// drops it, counted: a restart then rebuilds the aggregates without it, and says
    /// so as a gap).
    pub fn counted(&self, record: CountedRecord<'_>) {
        let bytes = Event::Counted(record).to_bytes();
        let counter = if self.log.append(bytes) { &self.counted_written } else { &self.counted_dropped };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes a notice record and waits until it is durable.
    pub async fn notice(&self, record: NoticeRecord<'_>) -> Result<(), EventLogError> {
        let result = self.log.append_durable(Event::Notice(record).to_bytes()).await;
        let counter = if result.is_ok() { &self.notices_written } else { &self.notices_failed };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// Prometheus text: records by outcome, and the log's own counters.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP ctrbid_events_bids_total Bid records by outcome (sampled out bids are not counted).\n");
        out.push_str("# TYPE ctrbid_events_bids_total counter\n");
        for (outcome, n) in [("written", &self.bids_written), ("dropped", &self.bids_dropped)] {
            let _ = writeln!(out, "ctrbid_events_bids_total{{outcome=\"{outcome}\"}} {}", n.load(Ordering::Relaxed));
        }
        out.push_str("# HELP ctrbid_events_shadows_total Shadow records (a shadow variant's prediction for a logged bid) by outcome.\n");
        out.push_str("# TYPE ctrbid_events_shadows_total counter\n");
        for (outcome, n) in [("written", &self.shadows_written), ("dropped", &self.shadows_dropped)] {
            let _ = writeln!(out, "ctrbid_events_shadows_total{{outcome=\"{outcome}\"}} {}", n.load(Ordering::Relaxed));
        }
        out.push_str("# HELP ctrbid_events_notices_total Notice records by outcome (durable before the answer).\n");
        out.push_str("# TYPE ctrbid_events_notices_total counter\n");
        for (outcome, n) in [("written", &self.notices_written), ("failed", &self.notices_failed)] {
            let _ = writeln!(out, "ctrbid_events_notices_total{{outcome=\"{outcome}\"}} {}", n.load(Ordering::Relaxed));
        }
        out.push_str("# HELP ctrbid_events_counted_total Records of events other instances counted in the aggregates, by outcome.\n");
        out.push_str("# TYPE ctrbid_events_counted_total counter\n");
        for (outcome, n) in [("written", &self.counted_written), ("dropped", &self.counted_dropped)] {
            let _ = writeln!(out, "ctrbid_events_counted_total{{outcome=\"{outcome}\"}} {}", n.load(Ordering::Relaxed));
        }
        self.log.render_prometheus(out);
    }
}

/// `share` (0 to 1) of the `u64` range.
fn sample_threshold(share: f64) -> u64 {
    if share >= 1.0 {
        u64::MAX
    } else {
        (share.max(0.0) * u64::MAX as f64) as u64
    }
}

/// SplitMix64's finaliser: bid ids are consecutive, their mixes uniform.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_its_share_of_consecutive_bids() {
        for share in [0.0, 0.1, 0.5] {
            let below = sample_threshold(share);
            let start = 0x1234_5678u64 << 16;
            let kept = (start..start + 100_000).filter(|&b| mix(b) < below).count();
            assert!((kept as f64 / 100_000.0 - share).abs() < 0.005, "{share}: {kept}");
        }
        assert_eq!(sample_threshold(1.0), u64::MAX);
    }
}
