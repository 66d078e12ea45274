//! The event log's knobs, their defaults, and their validation.

use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
pub const DEFAULT_SEGMENT_MAX_AGE: Duration = Duration::from_secs(3600);
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(2);
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(100);
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;
pub const DEFAULT_RETENTION_BYTES: u64 = 2 << 30;
/// The smallest `segment_bytes` accepted.
pub const MIN_SEGMENT_BYTES: u64 = 1024;
/// The largest `queue_capacity` accepted (the queue's slots are allocated at `open`).
pub const MAX_QUEUE_CAPACITY: usize = 1 << 24;

/// Where and how the event log writes. [`Default`] gives every default and no `dir`,
/// which [`EventLogConfig::validate`] refuses: use [`EventLogConfig::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLogConfig {
    /// The directory of the segments; created if missing. No default.
    pub dir: PathBuf,
    /// A segment is closed before a record would take it past this many bytes (a record
    /// larger than that gets a segment of its own). Default 64 MiB, at least 1 KiB.
    pub segment_bytes: u64,
    /// A segment is closed this long after its first record. Default 1 h.
    pub segment_max_age: Duration,
    /// Group commit: the least time between the starts of two commits (fdatasyncs) of
    /// durable records; zero commits after every batch the writer takes. Default 2 ms.
    pub commit_interval: Duration,
    /// Lossy records reach the file (not the disk) at most this long after being
    /// written, or at the next commit if sooner. Default 100 ms.
    pub flush_interval: Duration,
    /// Records the queue holds, durable and lossy together; a lossy record that finds it
    /// full is dropped, a durable one waits. Default 65,536, at most 2^24.
    pub queue_capacity: usize,
    /// Closed segments beyond this many bytes on disk are removed, oldest first.
    /// Default 2 GiB.
    pub retention_bytes: u64,
    /// gzip closed segments (on a background thread). Default true.
    pub compress_closed: bool,
}

impl Default for EventLogConfig {
    fn default() -> EventLogConfig {
        EventLogConfig {
            dir: PathBuf::new(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_max_age: DEFAULT_SEGMENT_MAX_AGE,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            retention_bytes: DEFAULT_RETENTION_BYTES,
            compress_closed: true,
        }
    }
}

impl EventLogConfig {
    /// The defaults, writing to `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> EventLogConfig {
        EventLogConfig { dir: dir.into(), ..EventLogConfig::default() }
    }

    /// Checks every field; the error names the first bad one. (Whether `dir` can be
    /// written is found out by `open`, whose error names the path.)
    pub fn validate(&self) -> anyhow::Result<()> {
        let check = |ok: bool, field: &str, why: &str| {
            if ok {
                Ok(())
            } else {
                Err(anyhow::anyhow!("eventlog.{field} {why}"))
            }
        };
        check(!self.dir.as_os_str().is_empty(), "dir", "is not set")?;
        check(self.segment_bytes >= MIN_SEGMENT_BYTES, "segment_bytes", "must be at least 1024")?;
        check(!self.segment_max_age.is_zero(), "segment_max_age", "must be more than zero")?;
        check(!self.flush_interval.is_zero(), "flush_interval", "must be more than zero")?;
        check(self.commit_interval <= Duration::from_secs(1), "commit_interval", "must be at most 1 s")?;
        check(
            (1..=MAX_QUEUE_CAPACITY).contains(&self.queue_capacity),
            "queue_capacity",
            "must be from 1 to 16,777,216",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_field_is_named() {
        let ok = EventLogConfig::new("/tmp/x");
        ok.validate().unwrap();
        type Spoil = fn(&mut EventLogConfig);
        let cases: [(&str, Spoil); 6] = [
            ("eventlog.dir is not set", |c| c.dir = PathBuf::new()),
            ("eventlog.segment_bytes", |c| c.segment_bytes = 100),
            ("eventlog.segment_max_age", |c| c.segment_max_age = Duration::ZERO),
            ("eventlog.flush_interval", |c| c.flush_interval = Duration::ZERO),
            ("eventlog.commit_interval", |c| c.commit_interval = Duration::from_secs(2)),
            ("eventlog.queue_capacity", |c| c.queue_capacity = 0),
        ];
        for (want, spoil) in cases {
            let mut c = ok.clone();
            spoil(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.starts_with(want), "{err}");
        }
    }
}
