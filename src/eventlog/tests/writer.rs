//! The writer's contract: lossy appends never wait, durable ones are never dropped and
//! resolve only after their commit, errors reach the waiters, and the writer goes on.

use super::*;
use crate::eventlog::writer::Hook;

/// Stalls the writer until the returned sender is dropped; returns once the writer
/// has taken the hook off the queue (so the queue is empty and stays unserved).
fn stall(log: &EventLog) -> crossbeam_channel::Sender<()> {
    let (release, until) = crossbeam_channel::bounded(0);
    log.hook(Hook::Stall(until));
    wait_until("the writer to take the stall", || log.stats().queue_depth == 0);
    release
}

/// Runs `f` on a thread and fails if it does not return within 10 s.
fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || tx.send(f()));
    rx.recv_timeout(Duration::from_secs(10)).expect("it did not return: it waited on the writer")
}

#[test]
fn a_full_queue_drops_lossy_records_at_once_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(EventLogConfig { queue_capacity: 4, ..config(dir.path()) }).unwrap();
    let release = stall(&log);
    let appender = log.clone();
    let accepted = within_10s(move || (0..1004).map(|i| appender.append(numbered(i, 20))).collect::<Vec<bool>>());
    assert_eq!(accepted.iter().filter(|&&a| a).count(), 4);
    assert!(accepted[..4].iter().all(|&a| a), "the first four fit");
    let stats = log.stats();
    assert_eq!((stats.dropped, stats.queue_depth, stats.records_appended), (1000, 4, 0));
    drop(release);
    log.close().unwrap();
    assert!(read_all(dir.path()).0 == (0..4).map(|i| numbered(i, 20)).collect::<Vec<_>>());
}

#[test]
fn durable_appends_wait_for_room_without_blocking_the_runtime_and_are_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(EventLogConfig { queue_capacity: 4, ..config(dir.path()) }).unwrap();
    let release = stall(&log);
    for i in 0..4 {
        assert!(log.append(numbered(i, 20)));
    }
    // One thread for every task: a durable append that blocked it would stop the timer.
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (100..120)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.append_durable(numbered(i, 20)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(tasks.iter().all(|t| !t.is_finished()), "a durable append finished with the writer stalled");
        // Waiting durable appends get the room first: a lossy one still finds none.
        assert!(!log.append(numbered(999, 20)));
        drop(release);
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    });
    log.close().unwrap();
    let got = read_all(dir.path()).0;
    assert_eq!(got.len(), 24);
    let mut durable: Vec<u32> = got[4..].iter().map(|r| u32::from_le_bytes(r[..4].try_into().unwrap())).collect();
    durable.sort_unstable();
    assert!(durable == (100..120).collect::<Vec<u32>>());
}

#[test]
fn a_durable_append_resolves_only_after_the_commit_that_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(EventLogConfig { commit_interval: Duration::ZERO, ..config(dir.path()) }).unwrap();
    for i in 0..20 {
        let before = log.stats().durable_commits;
        log.append_durable_blocking(numbered(i, 30)).unwrap();
        assert!(log.stats().durable_commits > before, "record {i} acknowledged before a commit");
        // And it is in the file already: the newest record a reader finds.
        let (got, _) = read_all(dir.path());
        assert!(got.last() == Some(&numbered(i, 30)), "record {i} is not in the file");
    }
    // With the writer stalled nothing resolves; released, it does.
    let release = stall(&log);
    let waiting = {
        let log = log.clone();
        std::thread::spawn(move || log.append_durable_blocking(numbered(20, 30)))
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(!waiting.is_finished());
    let before = log.stats().durable_commits;
    drop(release);
    waiting.join().unwrap().unwrap();
    assert_eq!(log.stats().durable_commits, before + 1);
    log.close().unwrap();
}

#[test]
fn concurrent_durable_appends_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(config(dir.path())).unwrap();
    let threads: Vec<_> = (0..16u32)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    log.append_durable_blocking(numbered(t * 1000 + i, 64)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let commits = log.stats().durable_commits;
    assert!(commits < 400, "{commits} commits for 800 records: no grouping");
    log.close().unwrap();
    let got = read_all(dir.path()).0;
    assert_eq!(got.len(), 800);
    // Each thread's records in the order it appended them.
    for t in 0..16u32 {
        let mine: Vec<u32> =
            got.iter().map(|r| u32::from_le_bytes(r[..4].try_into().unwrap())).filter(|n| n / 1000 == t).collect();
        assert!(mine == (t * 1000..t * 1000 + 50).collect::<Vec<u32>>(), "thread {t}");
    }
}

#[test]
fn lossy_records_reach_the_file_within_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let log =
        EventLog::open(EventLogConfig { flush_interval: Duration::from_millis(20), ..config(dir.path()) }).unwrap();
    assert!(log.append(numbered(1, 50)));
    let start = Instant::now();
    wait_until("the lossy record to reach the file", || read_all(dir.path()).0 == [numbered(1, 50)]);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(log.stats().durable_commits, 0, "flushed without a commit");
    log.close().unwrap();
}

#[test]
fn a_failed_write_reaches_its_waiter_and_the_next_record_gets_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(config(dir.path())).unwrap();
    log.append_durable_blocking(numbered(0, 40)).unwrap();
    log.hook(Hook::FailWrites(1));
    let err = log.append_durable_blocking(numbered(1, 40)).unwrap_err();
    assert!(matches!(err, EventLogError::Io { op: "write", .. }), "{err}");
    log.append_durable_blocking(numbered(2, 40)).unwrap();
    assert_eq!(log.stats().errors, 1);
    assert_eq!(files(dir.path(), ".log").len(), 2, "a new segment after the failure");
    log.close().unwrap();
    assert!(read_all(dir.path()).0 == [numbered(0, 40), numbered(2, 40)]);
}

#[test]
fn a_failed_commit_fails_its_waiters_and_counts_the_uncommitted_lossy_records_lost() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EventLogConfig { flush_interval: Duration::from_secs(10), ..config(dir.path()) };
    let log = EventLog::open(cfg).unwrap();
    log.append_durable_blocking(numbered(0, 40)).unwrap();
    assert!(log.append(numbered(1, 40)) && log.append(numbered(2, 40)));
    log.hook(Hook::FailWrites(1));
    let err = log.sync_blocking().unwrap_err();
    assert!(matches!(err, EventLogError::Io { op: "sync", .. }), "{err}");
    assert_eq!(log.stats().lost, 2);
    log.append_durable_blocking(numbered(3, 40)).unwrap();
    log.close().unwrap();
    // The failed segment was cut back to its last commit: no torn frame mid-log.
    assert!(read_all(dir.path()).0 == [numbered(0, 40), numbered(3, 40)]);
}

#[test]
fn a_reader_sees_a_prefix_of_a_log_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EventLogConfig { segment_bytes: 8192, flush_interval: Duration::from_millis(1), ..config(dir.path()) };
    let log = EventLog::open(cfg).unwrap();
    let record = |i: u32| numbered(i, 4 + i as usize % 90);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if log.append(record(n)) {
                    n += 1;
                }
            }
            n
        })
    };
    // Reads while the writer writes, until they have seen records in several segments.
    let mut seen = 0;
    for _ in 0..10_000 {
        let mut reader = Reader::open(dir.path()).unwrap();
        let got: Vec<Record> = reader.by_ref().map(Result::unwrap).collect();
        assert!(got.iter().enumerate().all(|(i, r)| r.data == record(i as u32)), "not a prefix");
        assert!(reader.torn() <= 1);
        seen = got.len();
        if got.last().is_some_and(|r| r.segment >= 3) {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    log.close().unwrap();
    assert!(seen > 0 && seen <= written as usize, "read {seen} of {written} records");
    assert!(read_all(dir.path()).0.len() == written as usize);
}

#[test]
fn after_close_every_handle_refuses_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(config(dir.path())).unwrap();
    let other = log.clone();
    assert!(log.append(numbered(0, 8)));
    log.close().unwrap();
    assert!(!other.append(numbered(1, 8)));
    assert_eq!(other.append_durable_blocking(numbered(2, 8)), Err(EventLogError::Closed));
    assert_eq!(other.clone().close(), Err(EventLogError::Closed));
    assert_eq!(other.stats().dropped, 1);
    drop(other);
    assert!(read_all(dir.path()).0 == [numbered(0, 8)]);
}
