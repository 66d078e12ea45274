//! The event log's counters, and their Prometheus text.
//!
//! Counters are `Relaxed` atomics: each is exact on its own, and a snapshot taken while
//! the writer runs may show one counter ahead of another. The writer adds per batch,
//! not per record. They wrap at `u64::MAX`, which no log reaches.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by the handle, the writer and the closed-segment thread.
#[derive(Debug, Default)]
pub struct Stats {
    pub appended: AtomicU64,
    pub bytes: AtomicU64,
    pub dropped: AtomicU64,
    pub too_large: AtomicU64,
    pub lost: AtomicU64,
    pub durable_commits: AtomicU64,
    pub errors: AtomicU64,
    pub segments_rotated: AtomicU64,
    pub segments_compressed: AtomicU64,
    pub segments_deleted: AtomicU64,
    pub torn_bytes_cut: AtomicU64,
}

/// A snapshot of the event log's counters ([`super::EventLog::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventLogStats {
    /// Records written to a segment (durable or not; not necessarily synced yet).
    pub records_appended: u64,
    /// Bytes of framed records written to segments.
    pub bytes_written: u64,
    /// Lossy records dropped because the queue was full or the log closed.
    pub dropped: u64,
    /// Records refused for being over `MAX_RECORD_BYTES`.
    pub too_large: u64,
    /// Lossy records lost to a write error (durable ones get the error instead).
    pub lost: u64,
    /// fdatasyncs of a segment that made records durable (group commits and rotations).
    pub durable_commits: u64,
    /// I/O errors of the writer and of compression and retention.
    pub errors: u64,
    /// Segments closed for size or age.
    pub segments_rotated: u64,
    pub segments_compressed: u64,
    /// Closed segments removed by retention.
    pub segments_deleted: u64,
    /// Bytes of torn records cut from the last segment when the log was opened.
    pub torn_bytes_cut: u64,
    /// Records waiting in the queue now.
    pub queue_depth: u64,
}

impl Stats {
    pub fn snapshot(&self, queue_depth: usize) -> EventLogStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EventLogStats {
            records_appended: get(&self.appended),
            bytes_written: get(&self.bytes),
            dropped: get(&self.dropped),
            too_large: get(&self.too_large),
            lost: get(&self.lost),
            durable_commits: get(&self.durable_commits),
            errors: get(&self.errors),
            segments_rotated: get(&self.segments_rotated),
            segments_compressed: get(&self.segments_compressed),
            segments_deleted: get(&self.segments_deleted),
            torn_bytes_cut: get(&self.torn_bytes_cut),
            queue_depth: queue_depth as u64,
        }
    }
}

impl EventLogStats {
    /// Appends the counters to `out` in the Prometheus text format, as `ctrbid_eventlog_*`.
    pub fn render_prometheus(&self, out: &mut String) {
        let counters = [
            ("records_total", "Records written to a segment.", self.records_appended),
            ("bytes_total", "Bytes of framed records written to segments.", self.bytes_written),
            ("dropped_total", "Lossy records dropped: queue full or log closed.", self.dropped),
            ("too_large_total", "Records refused for being over the maximum size.", self.too_large),
            ("lost_total", "Lossy records lost to a write error.", self.lost),
            ("commits_total", "fdatasyncs that made records durable.", self.durable_commits),
            ("errors_total", "I/O errors of the writer, compression and retention.", self.errors),
            ("segments_rotated_total", "Segments closed for size or age.", self.segments_rotated),
            ("segments_compressed_total", "Closed segments gzip-compressed.", self.segments_compressed),
            ("segments_deleted_total", "Closed segments removed by retention.", self.segments_deleted),
            ("torn_bytes_cut_total", "Bytes of torn records cut when the log was opened.", self.torn_bytes_cut),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP ctrbid_eventlog_{name} {help}\n# TYPE ctrbid_eventlog_{name} counter\nctrbid_eventlog_{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP ctrbid_eventlog_queue_depth Records waiting for the writer.\n\
             # TYPE ctrbid_eventlog_queue_depth gauge\nctrbid_eventlog_queue_depth {}",
            self.queue_depth
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter_with_its_type() {
        let stats = EventLogStats { records_appended: 7, segments_deleted: 2, queue_depth: 3, ..Default::default() };
        let mut out = String::new();
        stats.render_prometheus(&mut out);
        assert!(out.contains("# TYPE ctrbid_eventlog_records_total counter\nctrbid_eventlog_records_total 7\n"));
        assert!(out.contains("\nctrbid_eventlog_segments_deleted_total 2\n"));
        assert!(out.contains("# TYPE ctrbid_eventlog_queue_depth gauge\nctrbid_eventlog_queue_depth 3\n"));
        let samples: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples.len(), 12);
        for line in samples {
            let (name, _) = line.split_once(' ').unwrap();
            assert!(name == "ctrbid_eventlog_queue_depth" || name.ends_with("_total"), "{line}");
            assert!(out.contains(&format!("# TYPE {name} ")), "{name} has no TYPE line");
        }
    }
}
