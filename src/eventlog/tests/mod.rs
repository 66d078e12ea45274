//! Tests of the log as a whole: the writer, recovery, compression and retention, read
//! back with the reader. (The frame format, names and config have theirs beside them.)

mod recovery;
mod writer;

use super::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// The defaults for `dir`, without compression (tests that want it say so).
fn config(dir: &Path) -> EventLogConfig {
    EventLogConfig { compress_closed: false, ..EventLogConfig::new(dir) }
}

/// Record `i`: its number, then `len - 4` bytes of filler that depend on it.
fn numbered(i: u32, len: usize) -> Vec<u8> {
    let mut r = i.to_le_bytes().to_vec();
    r.extend((0..len.saturating_sub(4)).map(|k| (i as usize * 31 + k) as u8));
    r
}

/// Every record of `dir`, panicking on a read error, and the reader (for its counts).
fn read_all(dir: &Path) -> (Vec<Vec<u8>>, Reader) {
    let mut reader = Reader::open(dir).unwrap();
    let records = reader.by_ref().map(|r| r.unwrap().data).collect();
    (records, reader)
}

/// Waits for `done` (checked every millisecond), failing after 10 s.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The files of `dir` whose names end with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(suffix))
        .collect();
    out.sort();
    out
}

#[test]
fn records_of_every_size_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(config(dir.path())).unwrap();
    let mut want = Vec::new();
    for (i, len) in [0, 1, 4, 200, 5000, MAX_RECORD_BYTES, 17].into_iter().enumerate() {
        let record = if len < 4 { vec![7; len] } else { numbered(i as u32, len) };
        if i % 2 == 0 {
            log.append_durable_blocking(record.clone()).unwrap();
        } else {
            assert!(log.append(record.clone()));
        }
        want.push(record);
    }
    log.close().unwrap();
    let (got, reader) = read_all(dir.path());
    assert!(got == want, "{} records read, {} written", got.len(), want.len());
    assert_eq!((reader.torn(), reader.vanished()), (0, 0));
}

#[test]
fn records_over_the_maximum_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(config(dir.path())).unwrap();
    assert!(!log.append(vec![0; MAX_RECORD_BYTES + 1]));
    let err = log.append_durable_blocking(vec![0; MAX_RECORD_BYTES + 1]).unwrap_err();
    assert_eq!(err, EventLogError::TooLarge(MAX_RECORD_BYTES + 1));
    assert_eq!(log.stats().too_large, 2);
    log.close().unwrap();
    assert!(read_all(dir.path()).0.is_empty());
}

#[test]
fn an_unusable_dir_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let err = format!("{:#}", EventLog::open(config(&file.join("log"))).unwrap_err());
    assert!(err.contains("not-a-dir/log"), "{err}");
    let err = format!("{:#}", EventLog::open(config(&file)).unwrap_err());
    assert!(err.contains("not-a-dir"), "{err}");
    let err = EventLog::open(EventLogConfig { segment_bytes: 10, ..config(dir.path()) }).unwrap_err().to_string();
    assert!(err.starts_with("eventlog.segment_bytes"), "{err}");
}

#[test]
fn a_second_writer_on_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(config(dir.path())).unwrap();
    let err = EventLog::open(config(dir.path())).unwrap_err().to_string();
    assert!(err.contains("in use by another writer") && err.contains(&dir.path().display().to_string()), "{err}");
    log.close().unwrap();
    EventLog::open(config(dir.path())).unwrap().close().unwrap();
}

#[test]
fn segments_rotate_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(EventLogConfig { segment_bytes: 1024, ..config(dir.path()) }).unwrap();
    let want: Vec<Vec<u8>> = (0..100).map(|i| numbered(i, 100)).collect();
    for r in &want {
        assert!(log.append(r.clone()));
    }
    log.sync_blocking().unwrap();
    // (1024 - 8-byte header) / 108-byte frames: 9 records a segment, 12 segments.
    assert_eq!(log.stats().segments_rotated, 11);
    log.close().unwrap();
    let segments = files(dir.path(), ".log");
    assert_eq!(segments.len(), 12);
    for s in &segments[..11] {
        assert_eq!(std::fs::metadata(s).unwrap().len(), 8 + 9 * 108, "{}", s.display());
    }
    assert!(read_all(dir.path()).0 == want);
}

#[test]
fn open_since_leaves_out_segments_last_written_before() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(EventLogConfig { segment_bytes: 1024, ..config(dir.path()) }).unwrap();
    let want: Vec<Vec<u8>> = (0..30).map(|i| numbered(i, 100)).collect();
    for r in &want {
        assert!(log.append(r.clone()));
    }
    log.close().unwrap();
    // 9 records a segment: 4 segments. The first two were last written a day ago.
    let segments = files(dir.path(), ".log");
    assert_eq!(segments.len(), 4);
    let day_ago = std::time::SystemTime::now() - Duration::from_secs(86_400);
    for s in &segments[..2] {
        std::fs::File::options().write(true).open(s).unwrap().set_modified(day_ago).unwrap();
    }
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let mut reader = Reader::open_since(dir.path(), hour_ago).unwrap();
    let read: Vec<Vec<u8>> = reader.by_ref().map(|r| r.unwrap().data).collect();
    assert_eq!(read, want[18..]);
    assert_eq!(reader.skipped(), 2);
    // A horizon before every write reads everything.
    let all = Reader::open_since(dir.path(), day_ago - Duration::from_secs(1)).unwrap();
    assert_eq!(all.map(|r| r.unwrap().data).collect::<Vec<_>>(), want);
}

#[test]
fn segments_rotate_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EventLogConfig { segment_max_age: Duration::from_millis(30), ..config(dir.path()) };
    let log = EventLog::open(cfg).unwrap();
    log.append_durable_blocking(numbered(0, 10)).unwrap();
    wait_until("the first segment to age out", || log.stats().segments_rotated == 1);
    log.append_durable_blocking(numbered(1, 10)).unwrap();
    wait_until("the second segment to age out", || log.stats().segments_rotated == 2);
    log.close().unwrap();
    // Two segments of one record each; no empty segment was kept.
    assert_eq!(files(dir.path(), ".log").len(), 2);
    assert!(read_all(dir.path()).0 == [numbered(0, 10), numbered(1, 10)]);
}

#[test]
fn compression_keeps_every_record_readable_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EventLogConfig { segment_bytes: 4096, compress_closed: true, ..config(dir.path()) };
    let log = EventLog::open(cfg).unwrap();
    let want: Vec<Vec<u8>> = (0..2000).map(|i| numbered(i, 4 + (i as usize % 300))).collect();
    for r in &want {
        assert!(log.append(r.clone()));
    }
    log.close().unwrap();
    let gz = files(dir.path(), ".log.gz");
    assert!(gz.len() > 50, "{} segments", gz.len());
    assert!(files(dir.path(), ".log").is_empty() && files(dir.path(), ".tmp").is_empty());
    let mut reader = Reader::open(dir.path()).unwrap();
    let got: Vec<Record> = reader.by_ref().map(Result::unwrap).collect();
    assert!(got.iter().map(|r| &r.data).eq(want.iter()));
    assert!(got.windows(2).all(|w| (w[0].segment, w[0].offset) < (w[1].segment, w[1].offset)));
    // Reopened, the log counts what it compresses anew: nothing.
    let log = EventLog::open(EventLogConfig { compress_closed: true, ..config(dir.path()) }).unwrap();
    log.close().unwrap();
    assert_eq!(files(dir.path(), ".log.gz").len(), gz.len());
}

#[test]
fn retention_removes_the_oldest_segments_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EventLogConfig { segment_bytes: 1024, retention_bytes: 3000, ..config(dir.path()) };
    let log = EventLog::open(cfg).unwrap();
    for i in 0..100 {
        assert!(log.append(numbered(i, 100)));
    }
    let closed = log.clone();
    log.close().unwrap();
    // 12 segments: 11 of 980 bytes and the last, of one record, of 116. Retention
    // keeps the newest that fit in 3000 bytes: the last and two full ones.
    assert_eq!(closed.stats().segments_deleted, 9);
    let kept = files(dir.path(), ".log");
    assert_eq!(kept.len(), 3);
    let total: u64 = kept.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert_eq!(total, 980 * 2 + 116);
    let want: Vec<Vec<u8>> = (81..100).map(|i| numbered(i, 100)).collect();
    assert!(read_all(dir.path()).0 == want);
}

#[test]
fn renders_live_counters_for_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(config(dir.path())).unwrap();
    log.append_durable_blocking(vec![1; 10]).unwrap();
    let mut out = String::new();
    log.render_prometheus(&mut out);
    assert!(out.contains("\nctrbid_eventlog_records_total 1\n"), "{out}");
    assert!(out.contains("\nctrbid_eventlog_bytes_total 18\n"), "{out}");
    assert!(out.contains("\nctrbid_eventlog_commits_total 1\n"), "{out}");
}
