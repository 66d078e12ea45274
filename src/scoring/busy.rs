//! How busy the tokio workers are: the share of the last [`WINDOW`] they spent running
//! tasks, for `scoring.inline = "auto"` ([`super::Batcher`] scores a request inline only
//! while the workers have time to spare).
//!
//! A sampler thread reads tokio's per-worker busy time (`worker_total_busy_duration`,
//! a stable runtime metric) every [`PERIOD`] and publishes the mean over the workers
//! and the window as one atomic, so the request path pays one relaxed load. Tokio adds a
//! worker's busy time when it parks or runs its periodic maintenance (every 61 tasks by
//! default), so one sample may lag by a few milliseconds; the window spans several.
//! Busy time is wall time, so a worker descheduled by the kernel while it polls counts
//! as busy: on a shared box that is time the worker could not read requests either.
//!
//! The sampler holds only a weak reference: it stops once the gauge is dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the sampler reads the runtime's counters.
pub const PERIOD: Duration = Duration::from_millis(2);
/// The span the published share covers.
pub const WINDOW: Duration = Duration::from_millis(20);

/// The workers' busy share, in thousandths (0 until a sampler has published).
#[derive(Debug, Default)]
pub struct WorkerBusy {
    permille: AtomicU32,
}

impl WorkerBusy {
    /// A gauge fed by a sampler thread over `runtime`'s workers.
    pub fn sampled(runtime: &tokio::runtime::Handle) -> std::io::Result<Arc<WorkerBusy>> {
        let gauge = Arc::new(WorkerBusy::default());
        let weak = Arc::downgrade(&gauge);
        let metrics = runtime.metrics();
        std::thread::Builder::new().name("ctrbid-busy".into()).spawn(move || sample(&weak, &metrics))?;
        Ok(gauge)
    }

    /// A gauge nobody feeds: it reads 0 (idle) for ever. For a scorer used outside a
    /// runtime, such as a benchmark calling the handler directly.
    pub fn unsampled() -> Arc<WorkerBusy> {
        Arc::new(WorkerBusy::default())
    }

    /// The share of the last [`WINDOW`] the workers spent running tasks, 0 to 1.
    pub fn share(&self) -> f64 {
        f64::from(self.permille.load(Ordering::Relaxed)) / 1000.0
    }

    /// Whether the share is under `limit` (in thousandths, to keep floats off the
    /// request path).
    pub fn under(&self, limit_permille: u32) -> bool {
        self.permille.load(Ordering::Relaxed) < limit_permille
    }

    pub(crate) fn publish(&self, share: f64) {
        self.permille.store((share.clamp(0.0, 1.0) * 1000.0).round() as u32, Ordering::Relaxed);
    }
}

fn sample(gauge: &Weak<WorkerBusy>, metrics: &tokio::runtime::RuntimeMetrics) {
    let workers = metrics.num_workers().max(1);
    let total = || -> Duration { (0..workers).map(|w| metrics.worker_total_busy_duration(w)).sum() };
    // (when, the workers' busy time summed); the front is about WINDOW old.
    let mut history: VecDeque<(Instant, Duration)> = VecDeque::with_capacity(16);
    history.push_back((Instant::now(), total()));
    loop {
        std::thread::sleep(PERIOD);
        let Some(gauge) = gauge.upgrade() else { return };
        let now = (Instant::now(), total());
        while history.len() > 1 && now.0 - history[1].0 >= WINDOW {
            history.pop_front();
        }
        let (then, busy_then) = history[0];
        let span = (now.0 - then).as_secs_f64() * workers as f64;
        if span > 0.0 {
            gauge.publish(now.1.saturating_sub(busy_then).as_secs_f64() / span);
        }
        history.push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker kept busy by a spinning task reads as busy; with nothing to do, as idle.
    /// Each state is waited for (up to 10 s, for a box whose other cores are busy)
    /// rather than read after a fixed sleep, and read through both `share` and `under`.
    #[test]
    fn a_spinning_worker_reads_busy_and_an_idle_one_idle() {
        use std::sync::atomic::AtomicBool;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let gauge = WorkerBusy::sampled(rt.handle()).unwrap();
        let wait_for = |what: &str, holds: &dyn Fn(&WorkerBusy) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !holds(&gauge) {
                assert!(Instant::now() < deadline, "{what}: share {} after 10 s", gauge.share());
                std::thread::sleep(PERIOD);
            }
        };
        wait_for("idle worker", &|g| g.share() < 0.2 && g.under(200));
        let stop = Arc::new(AtomicBool::new(false));
        let spinning = Arc::clone(&stop);
        let spin = rt.spawn(async move {
            while !spinning.load(Ordering::Relaxed) {
                // Yield now and then so tokio runs its maintenance and reports busy time.
                for _ in 0..1000 {
                    std::hint::spin_loop();
                }
                tokio::task::yield_now().await;
            }
        });
        wait_for("spinning worker", &|g| g.share() > 0.8 && !g.under(800));
        stop.store(true, Ordering::Relaxed);
        rt.block_on(spin).unwrap();
        wait_for("idle again", &|g| g.share() < 0.2 && g.under(200));
        assert_eq!(WorkerBusy::unsampled().share(), 0.0);
    }
}
