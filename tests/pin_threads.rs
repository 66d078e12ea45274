//! `scoring.pin_threads`: the served process's threads are where `cpus::plan` says,
//! as the kernel reports them, and a placement that leaves no CPU for the rest is a
//! start-up error. Runs the `ctrbid` binary (affinity is per thread of a process).
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn serve(extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ctrbid"));
    cmd.args(["serve", "--config", "deploy/ctrbid.toml", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(extra)
        .env("CTRBID_NOTICE_KEY", "k".repeat(32))
        .current_dir(repo());
    cmd
}

/// Thread name -> `Cpus_allowed_list`, for every thread of `pid`. A thread that exits
/// while the directory is read (its files are gone by the time they are opened) is
/// left out: it is no longer a thread of the process.
fn thread_cpus(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(task) = task else { continue };
        let dir = task.path();
        let (Ok(name), Ok(status)) =
            (std::fs::read_to_string(dir.join("comm")), std::fs::read_to_string(dir.join("status")))
        else {
            continue;
        };
        let cpus = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_string();
        out.push((name.trim().to_string(), cpus));
    }
    out
}

#[test]
fn inference_threads_get_a_cpu_of_their_own_and_the_rest_the_others() {
    let allowed = ctrbid::cpus::allowed().unwrap();
    if allowed.len() < 2 {
        // One CPU: nothing to place, and start-up says so.
        let out = serve(&["--pin-threads", "true"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("more CPUs than inference threads"), "{stderr}");
        return;
    }
    let plan = ctrbid::cpus::plan(&allowed, 1).unwrap();
    let mut child = serve(&["--pin-threads", "true", "--inference-threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    // A new thread names and pins itself once it runs, which may be a moment after the
    // start-up line: look until it has (or 10 s have passed).
    let want = plan.inference[0].to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let threads = loop {
        let threads = thread_cpus(child.id());
        let placed = threads.iter().any(|(name, cpus)| name.starts_with("ctrbid-infer") && *cpus == want);
        if placed || Instant::now() > deadline {
            break threads;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(line.contains(&format!("inference_cpus={:?} other_cpus={:?}", plan.inference, plan.rest)), "{line}");
    let list = |cpus: &[usize]| cpus.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let (inference, others): (Vec<_>, Vec<_>) = threads.iter().partition(|(name, _)| name.starts_with("ctrbid-infer"));
    assert_eq!(inference.len(), 1, "{threads:?}");
    assert_eq!(inference[0].1, plan.inference[0].to_string(), "{threads:?}");
    // The kernel prints ranges ("0-2") for runs of three or more; a 2-4 CPU box's rest
    // is one CPU or a pair, printed as a list.
    if plan.rest.len() <= 2 {
        assert!(others.iter().all(|(_, cpus)| *cpus == list(&plan.rest)), "{threads:?}");
    }
    assert!(others.iter().any(|(name, _)| name == "ctrbid-worker"), "{threads:?}");
}

#[test]
fn a_placement_without_a_cpu_for_the_rest_is_a_start_up_error() {
    let cpus = ctrbid::cpus::allowed().unwrap().len();
    let out = serve(&["--pin-threads", "true", "--inference-threads", &cpus.to_string()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {stderr}");
    assert!(stderr.contains("scoring.pin_threads needs more CPUs than inference threads"), "{stderr}");
    assert!(stderr.contains(&format!("{cpus} inference thread(s)")), "{stderr}");
}
