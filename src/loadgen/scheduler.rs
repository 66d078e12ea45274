//! The scheduler thread: starts each request as a task on the runtime at its due time.
//!
//! A thread sleeping with `std::thread::sleep` wakes within tens of microseconds of the
//! due time, where the runtime's timer would round up to the next millisecond and add
//! that to every latency. If the thread falls behind, it starts every overdue request at
//! once; their latency still counts from the due time.

use super::exchange::exchange;
use super::pool::Pool;
use super::schedule::Schedule;
use super::summary::Outcome;
use super::target::Target;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// One recorded request, sent from its task to the collector.
pub struct Ended {
    /// Its index in the schedule.
    pub index: u64,
    pub due: Instant,
    /// Due time to the task first running.
    pub start_lag: Duration,
    pub end: Instant,
    pub outcome: Outcome,
    pub error: Option<String>,
}

pub struct Scheduler {
    pub schedule: Schedule,
    /// Due time of request 0.
    pub start: Instant,
    /// Client timeout (see [`exchange`]).
    pub timeout: Duration,
    pub target: Arc<Target>,
    pub pool: Arc<Pool>,
    pub runtime: Handle,
}

impl Scheduler {
    /// Starts every request due by now, then sleeps until the next is due. Recorded
    /// requests hold a sender, so the collector's channel closes when the last one ends.
    pub fn run(self, tx: mpsc::UnboundedSender<Ended>) {
        let total = self.schedule.total();
        let mut next = 0;
        while next < total {
            let now = Instant::now();
            while next < total && self.start + self.schedule.due(next) <= now {
                self.spawn(next, self.schedule.is_recorded(next).then(|| tx.clone()));
                next += 1;
            }
            if next < total {
                std::thread::sleep((self.start + self.schedule.due(next)).saturating_duration_since(Instant::now()));
            }
        }
    }

    fn spawn(&self, i: u64, tx: Option<mpsc::UnboundedSender<Ended>>) {
        let due = self.start + self.schedule.due(i);
        let timeout = self.timeout;
        let req = self.target.request(i);
        let pool = Arc::clone(&self.pool);
        self.runtime.spawn(async move {
            let start_lag = Instant::now().saturating_duration_since(due);
            let (outcome, error) = exchange(&pool, req, tokio::time::Instant::from_std(due), timeout).await;
            if let Some(tx) = tx {
                let _ = tx.send(Ended { index: i, due, start_lag, end: Instant::now(), outcome, error });
            }
        });
    }
}
