//! Where and how the server's threads run: a CPU of its own for each inference thread,
//! the remaining CPUs for everything else (`scoring.pin_threads`); and real-time
//! priority for the inference threads (`scoring.realtime_inference`).
//!
//! An inference thread runs ONNX Runtime flat out while a batch lasts, and every
//! request of the batch waits for it. On a small box shared with other work (the load
//! generator, other tenants) the tail of the in-process latency is mostly that thread
//! waiting for a core, not working: pinning it to a core of its own, with the tokio
//! workers kept off that core, cut p99 to 0.52-0.66x in an interleaved A/B
//! (loadtest/README.md). Linux only; elsewhere asking for it is a start-up error.
//!
//! Threads inherit their creator's CPU set, so `serve` pins the main thread to
//! [`Placement::rest`] before it starts the runtime (the tokio workers, the accept
//! loop, the admin server and metrics follow), and each inference thread pins itself
//! to its CPU when it starts.

use std::io;

/// Which CPUs the inference threads and the rest of the server get. Invariant:
/// `inference` and `rest` are disjoint, neither is empty, and together they are a
/// subset of the CPUs the process may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Inference thread `i` runs on `inference[i]`.
    pub inference: Vec<usize>,
    pub rest: Vec<usize>,
}

/// The placement for `threads` inference threads on the `allowed` CPUs: the highest
/// CPUs to the inference threads, one each, the others to the rest. An error when no
/// CPU would be left for the rest.
pub fn plan(allowed: &[usize], threads: usize) -> anyhow::Result<Placement> {
    let mut cpus = allowed.to_vec();
    cpus.sort_unstable();
    cpus.dedup();
    anyhow::ensure!(threads >= 1, "scoring.pin_threads needs at least one inference thread");
    anyhow::ensure!(
        cpus.len() > threads,
        "scoring.pin_threads needs more CPUs than inference threads: this process may use {} CPU(s) ({cpus:?}) \
         and has {threads} inference thread(s)",
        cpus.len()
    );
    let mut inference = cpus.split_off(cpus.len() - threads);
    inference.reverse();
    Ok(Placement { inference, rest: cpus })
}

/// The CPUs the calling thread may run on.
#[cfg(target_os = "linux")]
pub fn allowed() -> io::Result<Vec<usize>> {
    use nix::sched::{sched_getaffinity, CpuSet};
    let set = sched_getaffinity(nix::unistd::Pid::from_raw(0)).map_err(io::Error::from)?;
    Ok((0..CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).collect())
}

/// Restricts the calling thread to `cpus`.
#[cfg(target_os = "linux")]
pub fn pin_current(cpus: &[usize]) -> io::Result<()> {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("CPU {c} is out of range")))?;
    }
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(io::Error::from)
}

/// Puts the calling thread under SCHED_FIFO at priority 1, the lowest real-time one:
/// when runnable it preempts every thread of normal priority, and gives its CPU up
/// only when it blocks (an inference thread blocks on its queue between batches; the
/// kernel's real-time throttling, 95 % of each second by default, bounds the rest).
/// Needs CAP_SYS_NICE (or an RLIMIT_RTPRIO of at least 1).
#[cfg(target_os = "linux")]
pub fn realtime_current() -> io::Result<()> {
    use thread_priority::unix::{RealtimeThreadSchedulePolicy, ThreadSchedulePolicy};
    // `Min` is the policy's lowest priority: 1 for SCHED_FIFO.
    set_current_policy(
        thread_priority::ThreadPriority::Min,
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
}

/// Puts the calling thread back under the normal policy (SCHED_OTHER, nice 0), as an
/// inference thread does while it is too busy for real-time priority to pay
/// ([`crate::scoring::realtime`]).
#[cfg(target_os = "linux")]
pub fn normal_current() -> io::Result<()> {
    use thread_priority::unix::{NormalThreadSchedulePolicy, ThreadSchedulePolicy};
    set_current_policy(
        thread_priority::ThreadPriority::Os(thread_priority::ThreadPriorityOsValue::default()),
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
    )
}

/// The calling thread's scheduling policy and priority, an OS refusal as its errno.
#[cfg(target_os = "linux")]
fn set_current_policy(
    priority: thread_priority::ThreadPriority,
    policy: thread_priority::unix::ThreadSchedulePolicy,
) -> io::Result<()> {
    use thread_priority::unix::{set_thread_priority_and_policy, thread_native_id};
    set_thread_priority_and_policy(thread_native_id(), priority, policy).map_err(|e| match e {
        thread_priority::Error::OS(errno) => io::Error::from_raw_os_error(errno),
        other => io::Error::other(other.to_string()),
    })
}

/// Whether this process may put a thread under SCHED_FIFO: tries it on a short-lived
/// thread of its own (so no other thread's priority changes), for a start-up error
/// that names the setting rather than a warning from each inference thread.
pub fn check_realtime() -> anyhow::Result<()> {
    let tried =
        std::thread::spawn(realtime_current).join().map_err(|_| anyhow::anyhow!("the probe thread panicked"))?;
    tried.map_err(|e| {
        anyhow::anyhow!(
            "scoring.realtime_inference: this process may not use SCHED_FIFO ({e}); it needs CAP_SYS_NICE \
             (or RLIMIT_RTPRIO >= 1), or set scoring.realtime_inference = false"
        )
    })
}

#[cfg(not(target_os = "linux"))]
pub fn realtime_current() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "real-time inference threads (scoring.realtime_inference) need Linux",
    ))
}

#[cfg(not(target_os = "linux"))]
pub fn normal_current() -> io::Result<()> {
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn allowed() -> io::Result<Vec<usize>> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "CPU placement (scoring.pin_threads) needs Linux"))
}

#[cfg(not(target_os = "linux"))]
pub fn pin_current(_cpus: &[usize]) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "CPU placement (scoring.pin_threads) needs Linux"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_threads_take_the_highest_cpus_one_each() {
        assert_eq!(plan(&[0, 1], 1).unwrap(), Placement { inference: vec![1], rest: vec![0] });
        assert_eq!(plan(&[3, 0, 2, 1], 2).unwrap(), Placement { inference: vec![3, 2], rest: vec![0, 1] });
        // A cpuset with holes, listed twice.
        assert_eq!(plan(&[5, 0, 2, 2], 1).unwrap(), Placement { inference: vec![5], rest: vec![0, 2] });
    }

    #[test]
    fn a_placement_leaves_the_rest_a_cpu() {
        let err = plan(&[0, 1], 2).unwrap_err().to_string();
        assert!(err.contains("more CPUs than inference threads") && err.contains("2 CPU(s)"), "{err}");
        assert!(plan(&[0], 1).is_err());
        assert!(plan(&[0, 1], 0).is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_pinned_to_one_allowed_cpu_reports_just_that_cpu() {
        let allowed = allowed().unwrap();
        assert!(!allowed.is_empty());
        let last = *allowed.last().unwrap();
        let seen = std::thread::spawn(move || {
            pin_current(&[last]).unwrap();
            allowed_in_proc_status()
        })
        .join()
        .unwrap();
        assert_eq!(seen, last.to_string());
        // The spawning thread keeps its own set.
        assert_eq!(super::allowed().unwrap(), allowed);
    }

    /// `Cpus_allowed_list` of the calling thread, as the kernel reports it.
    #[cfg(target_os = "linux")]
    fn allowed_in_proc_status() -> String {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_string()
    }
}
