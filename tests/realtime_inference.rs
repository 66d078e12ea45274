//! `scoring.realtime_inference`: the served process's inference threads run under
//! SCHED_FIFO and every other thread under the normal policy, as the kernel reports
//! them; where the process may not use SCHED_FIFO, start-up fails and says why. Runs
//! the `ctrbid` binary (a scheduling policy is per thread of a process).
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `policy` in `/proc/<pid>/task/<tid>/stat` (field 41): 0 normal, 1 SCHED_FIFO.
const SCHED_FIFO: u32 = 1;

fn serve(extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ctrbid"));
    cmd.args(["serve", "--config", "deploy/ctrbid.toml", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(extra)
        .env("CTRBID_NOTICE_KEY", "k".repeat(32))
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    cmd
}

/// A server started with `extra` flags, and its start-up line.
fn started(extra: &[&str]) -> (std::process::Child, String) {
    let mut child = serve(extra).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (child, line)
}

/// Thread name -> scheduling policy, for every thread of `pid`.
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let (Ok(comm), Ok(stat)) =
            (std::fs::read_to_string(dir.join("comm")), std::fs::read_to_string(dir.join("stat")))
        else {
            continue; // the thread ended between the listing and the reads
        };
        // The fields after the command name, which is in parentheses and may hold spaces:
        // the state is field 3, so the policy (41) is the 39th of these.
        let after = stat.rsplit_once(')').unwrap().1.split_whitespace().collect::<Vec<_>>();
        out.push((comm.trim().to_string(), after[38].parse().unwrap()));
    }
    out
}

#[test]
fn inference_threads_run_under_sched_fifo_and_nothing_else_does() {
    let allowed = std::thread::spawn(ctrbid::cpus::realtime_current).join().unwrap();
    if let Err(e) = allowed {
        // This machine may not: start-up is refused, naming the setting and the cause.
        eprintln!("SKIPPED the SCHED_FIFO checks: this process may not use SCHED_FIFO ({e}); checking the start-up refusal instead");
        let out = serve(&["--realtime-inference", "true"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started without SCHED_FIFO ({e}): {stderr}");
        assert!(stderr.contains("scoring.realtime_inference") && stderr.contains("CAP_SYS_NICE"), "{stderr}");
        return;
    }
    let (mut child, line) = started(&["--realtime-inference", "true", "--inference-threads", "1"]);
    // A new thread sets its policy once it runs, which may be a moment after the
    // start-up line: look until it has (or 10 s have passed).
    let deadline = Instant::now() + Duration::from_secs(10);
    let threads = loop {
        let threads = thread_policies(child.id());
        let done = threads.iter().any(|(name, policy)| name.starts_with("ctrbid-infer") && *policy == SCHED_FIFO);
        if done || Instant::now() > deadline {
            break threads;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(line.contains("inference_sched=fifo"), "{line}");
    let (inference, others): (Vec<_>, Vec<_>) = threads.iter().partition(|(name, _)| name.starts_with("ctrbid-infer"));
    assert_eq!(inference, vec![&("ctrbid-infer-0".to_string(), SCHED_FIFO)], "{threads:?}");
    assert!(others.iter().any(|(name, _)| name == "ctrbid-worker"), "{threads:?}");
    assert!(others.iter().all(|(_, policy)| *policy == 0), "only the inference thread is real-time: {threads:?}");
}

/// Off by default: no thread of a default server is real-time.
#[test]
fn by_default_no_thread_is_real_time() {
    let (mut child, line) = started(&[]);
    std::thread::sleep(Duration::from_millis(100));
    let threads = thread_policies(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!line.contains("inference_sched"), "{line}");
    assert!(threads.iter().any(|(name, _)| name.starts_with("ctrbid-infer")), "{threads:?}");
    assert!(threads.iter().all(|(_, policy)| *policy == 0), "{threads:?}");
}

/// The body of `GET path` from `addr` (host:port), on a connection of its own.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    reply.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// `policy` of the calling thread, from `/proc/thread-self/stat`.
fn own_policy() -> u32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    stat.rsplit_once(')').unwrap().1.split_whitespace().nth(38).unwrap().parse().unwrap()
}

/// An inference thread too busy for SCHED_FIFO to pay leaves it and takes it back
/// later (`ctrbid::scoring::realtime`): both changes, as the kernel reports them.
#[test]
fn a_thread_leaves_sched_fifo_and_takes_it_back() {
    let policies = std::thread::spawn(|| {
        ctrbid::cpus::realtime_current().map(|()| {
            let fifo = own_policy();
            ctrbid::cpus::normal_current().unwrap();
            let normal = own_policy();
            ctrbid::cpus::realtime_current().unwrap();
            (fifo, normal, own_policy())
        })
    })
    .join()
    .unwrap();
    match policies {
        Ok(p) => assert_eq!(p, (SCHED_FIFO, 0, SCHED_FIFO)),
        // Without CAP_SYS_NICE only the way back to normal can be checked.
        Err(e) => {
            eprintln!("SKIPPED taking SCHED_FIFO: {e}; checking only the way back to normal");
            ctrbid::cpus::normal_current().unwrap();
            assert_eq!(own_policy(), 0);
        }
    }
}

/// Under all-batched overload the server reports its real-time threads, and once load
/// stops the inference thread is under SCHED_FIFO again after its next batch, whether
/// or not it left it meanwhile (leaving depends on inference being the bottleneck,
/// which depends on the machine: the decision itself is unit-tested).
#[test]
fn after_overload_the_inference_thread_is_real_time_again() {
    if let Err(e) = std::thread::spawn(ctrbid::cpus::realtime_current).join().unwrap() {
        // The refusal is checked by the start-up test above.
        eprintln!("SKIPPED: this process may not use SCHED_FIFO ({e}); nothing to check after overload");
        return;
    }
    let (mut child, line) =
        started(&["--realtime-inference", "true", "--inline-scoring", "false", "--inference-threads", "1"]);
    let bid = line.split("listening on ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let admin = line.split("(admin ").nth(1).unwrap().split(';').next().unwrap().to_string();
    let corpus = std::env::temp_dir().join(format!("ctrbid-rt-corpus-{}.jsonl", std::process::id()));
    let body = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openrtb/prebid/appnexus-02e2f89eb2b8fcdd.json"),
    )
    .unwrap();
    let one_line: serde_json::Value = serde_json::from_str(&body).unwrap();
    std::fs::write(&corpus, format!("{one_line}\n")).unwrap();
    let loadgen = |rate: &str, seconds: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_ctrbid"))
            .args(["loadgen", "--url", &format!("{bid}/openrtb2/bid"), "--corpus"])
            .arg(&corpus)
            .args(["--rate", rate, "--duration-s", seconds, "--warmup-s", "0", "--max-connections", "64"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    loadgen("20000", "2");
    let metrics = |name: &str| -> u64 {
        let text = http_get(admin.trim_start_matches("http://"), "/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from {text}"))
            .parse()
            .unwrap()
    };
    let left = metrics("ctrbid_inference_realtime_left_total");
    // Idle for more than a window, then one batch: it closes an almost idle window.
    std::thread::sleep(Duration::from_millis(200));
    loadgen("10", "1");
    let now = metrics("ctrbid_inference_realtime_threads");
    let threads = thread_policies(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(&corpus);
    eprintln!("the inference thread left SCHED_FIFO {left} times under overload");
    assert_eq!(now, 1, "{threads:?}");
    let inference: Vec<_> = threads.iter().filter(|(name, _)| name.starts_with("ctrbid-infer")).collect();
    assert_eq!(inference, vec![&("ctrbid-infer-0".to_string(), SCHED_FIFO)], "{threads:?}");
}
