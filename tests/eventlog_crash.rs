//! The event log killed for real: a child process writing as fast as it can is sent
//! SIGKILL, and every durable record it was told was written must be read back, once.
//!
//! The test re-executes its own binary with `CTRBID_EVENTLOG_CRASH_CHILD` set to a
//! directory, running only [`child_writer`]: several tokio tasks append durable records
//! numbered 0, 1, 2, … (each followed by lossy ones), and print `ack N` once
//! `append_durable(N)` has returned `Ok`. The parent kills the child after at least
//! [`ACKS_BEFORE_KILL`] acknowledgements (plus a varying number, to vary where the
//! writer is cut), reads the rest of its output (acknowledged before the kill), reads
//! the directory as the crash left it, reopens it (recovery), and checks the records.
//! Three rounds on one directory: later rounds recover a log that was recovered before.

use ctrbid::eventlog::{EventLog, EventLogConfig, Reader};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CHILD_ENV: &str = "CTRBID_EVENTLOG_CRASH_CHILD";
const ROUND_ENV: &str = "CTRBID_EVENTLOG_CRASH_ROUND";
const ROUNDS: u8 = 3;
const TASKS: u8 = 8;
const LOSSY_PER_DURABLE: u32 = 3;
const ACKS_BEFORE_KILL: usize = 2000;
/// Small segments, so that the kill also lands during rotations and compressions.
const SEGMENT_BYTES: u64 = 256 << 10;

/// One record: `kind | round | task | seq (u32) | n (u64) | filler`. `seq` counts the
/// task's records (both kinds), `n` numbers durable records across tasks; the filler's
/// length and bytes follow from `n` and `seq`, so that a damaged record is noticed.
fn record(kind: u8, round: u8, task: u8, seq: u32, n: u64) -> Vec<u8> {
    let mut r = vec![kind, round, task];
    r.extend_from_slice(&seq.to_le_bytes());
    r.extend_from_slice(&n.to_le_bytes());
    let len = (n.wrapping_mul(7).wrapping_add(u64::from(seq) * 13) % 500) as usize;
    r.extend((0..len).map(|k| (n as usize).wrapping_add(seq as usize + k) as u8));
    r
}

struct Parsed {
    kind: u8,
    round: u8,
    task: u8,
    seq: u32,
    n: u64,
}

fn parse(r: &[u8]) -> Parsed {
    assert!(r.len() >= 15, "a record of {} bytes", r.len());
    let p = Parsed {
        kind: r[0],
        round: r[1],
        task: r[2],
        seq: u32::from_le_bytes(r[3..7].try_into().unwrap()),
        n: u64::from_le_bytes(r[7..15].try_into().unwrap()),
    };
    assert!(r == record(p.kind, p.round, p.task, p.seq, p.n), "a damaged record");
    p
}

fn config(dir: &Path) -> EventLogConfig {
    EventLogConfig { segment_bytes: SEGMENT_BYTES, ..EventLogConfig::new(dir) }
}

/// The child's work; a no-op unless the parent started it.
#[test]
fn child_writer() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let round: u8 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let first_n = u64::from(round) << 40;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    rt.block_on(async move {
        let log = EventLog::open(config(Path::new(&dir))).unwrap();
        let next = Arc::new(AtomicU64::new(first_n));
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (log, next) = (log.clone(), next.clone());
                tokio::spawn(async move {
                    let mut seq = 0u32;
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        log.append_durable(record(b'D', round, task, seq, n)).await.unwrap();
                        seq += 1;
                        // One write per line: the parent sees whole lines.
                        let _ = std::io::stdout().lock().write_all(format!("ack {n}\n").as_bytes());
                        for _ in 0..LOSSY_PER_DURABLE {
                            log.append(record(b'L', round, task, seq, 0));
                            seq += 1;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Runs one child until it has acknowledged at least `kill_after` records, kills it,
/// and returns every number it acknowledged.
fn crash_child(dir: &Path, round: u8, kill_after: usize) -> Vec<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_writer", "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reading = std::thread::spawn(move || {
        for line in stdout.lines() {
            if let Some(n) = line.unwrap().strip_prefix("ack ") {
                let _ = tx.send(n.parse::<u64>().unwrap());
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < kill_after {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(n) => acked.push(n),
            Err(e) => {
                let _ = child.kill();
                panic!("the child stopped acknowledging after {} records: {e}", acked.len());
            }
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(status.code().is_none(), "the child exited by itself: {status}");
    reading.join().unwrap();
    // Acknowledged before the kill, still in the pipe.
    acked.extend(rx.try_iter());
    acked
}

/// Reads every record of `dir`; the durable numbers seen (each at most once), after
/// checking each record's bytes and each task's order.
fn check_log(dir: &Path) -> (BTreeSet<u64>, u64) {
    let mut reader = Reader::open(dir).unwrap();
    let mut durable = BTreeSet::new();
    let mut last_seq: HashMap<(u8, u8), u32> = HashMap::new();
    for r in reader.by_ref() {
        let r = r.unwrap_or_else(|e| panic!("reading the crashed log: {e}"));
        let p = parse(&r.data);
        if let Some(last) = last_seq.insert((p.round, p.task), p.seq) {
            assert!(p.seq > last, "task {} of round {}: record {} after {last}", p.task, p.round, p.seq);
        }
        if p.kind == b'D' {
            assert!(durable.insert(p.n), "durable record {} read twice", p.n);
        }
    }
    (durable, reader.torn())
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<u64> = Vec::new();
    for round in 0..ROUNDS {
        let kill_after = ACKS_BEFORE_KILL + usize::from(round) * 1777;
        let this_round = crash_child(dir.path(), round, kill_after);
        assert!(this_round.len() >= kill_after);
        acked.extend(this_round);

        // As the crash left it: a torn tail at most, and every acknowledged record.
        let (durable, _torn) = check_log(dir.path());
        let missing: Vec<u64> = acked.iter().copied().filter(|n| !durable.contains(n)).collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} acknowledged records missing: {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );

        // Recovered: the same records, no torn tail, and the log takes new ones.
        let log = EventLog::open(config(dir.path())).unwrap();
        eprintln!(
            "round {round}: {} acknowledged, {} durable read, torn tail {_torn} ({} bytes cut at open)",
            acked.len(),
            durable.len(),
            log.stats().torn_bytes_cut
        );
        let marker = record(b'M', round, u8::MAX, 0, u64::MAX);
        log.append_durable_blocking(marker.clone()).unwrap();
        log.close().unwrap();
        let (after, torn) = check_log(dir.path());
        assert_eq!(torn, 0, "round {round}: a torn tail after recovery");
        assert!(after == durable, "round {round}: recovery changed the durable records");
        let last = Reader::open(dir.path()).unwrap().last().unwrap().unwrap();
        assert!(last.data == marker, "round {round}: the record appended after recovery is not last");
    }
    let unique: BTreeSet<u64> = acked.iter().copied().collect();
    assert_eq!(unique.len(), acked.len(), "a number acknowledged twice");
}
