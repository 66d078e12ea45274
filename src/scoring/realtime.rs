//! When a real-time inference thread (`scoring.realtime_inference`) should give its
//! priority up, and when take it back.
//!
//! SCHED_FIFO pays for one thing: a batch that becomes ready is scored at once rather
//! than after the tokio worker that holds the CPU finishes its time slice. That matters
//! while the thread is mostly idle. Once it is busy most of the time it is the
//! bottleneck, and at real-time priority it keeps a whole core from the workers that
//! parse requests, build their rows and write the answers, so every stage around it
//! waits. Measured on this 2-core box (loadtest/README.md, "A real-time inference thread"): below
//! saturation SCHED_FIFO cut p99 to x0.21, near saturation it doubled it and put
//! p99.9 at x4.7.
//!
//! So the thread measures its own busy share over [`WINDOW`] and leaves SCHED_FIFO
//! above `scoring.realtime_max_busy` (default 0.5: with two tokio workers and one
//! inference thread on two cores, each would get two thirds of a core under the normal
//! policy, and half a core is well inside that), taking it back below half of that
//! (the gap keeps it from flapping at the boundary). [`Governor`] is only the decision,
//! so that it can be tested without a scheduler; the inference loop applies it.
//!
//! Invariant: the thread started under SCHED_FIFO (`serve` checked the process may use
//! it), so returning to it later is allowed too.

use std::time::{Duration, Instant};

/// The span over which the busy share is measured.
pub const WINDOW: Duration = Duration::from_millis(50);

/// What the inference thread should do to its policy now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Leave SCHED_FIFO for the normal policy.
    Leave,
    /// Take SCHED_FIFO again.
    Return,
}

/// Tracks one inference thread's busy share and says when its policy should change.
#[derive(Debug)]
pub struct Governor {
    realtime: bool,
    /// Busy above this share of a window: the normal policy.
    leave_above: f64,
    /// Busy below this share: SCHED_FIFO again.
    return_below: f64,
    window_start: Instant,
    busy: Duration,
}

impl Governor {
    /// A thread that is under SCHED_FIFO from `now` and should leave it while busy
    /// more than `max_busy` of the time (0 to 1).
    pub fn new(now: Instant, max_busy: f64) -> Governor {
        Governor {
            realtime: true,
            leave_above: max_busy,
            return_below: max_busy / 2.0,
            window_start: now,
            busy: Duration::ZERO,
        }
    }

    /// Whether the thread should be under SCHED_FIFO now.
    pub fn realtime(&self) -> bool {
        self.realtime
    }

    /// Records `busy` (one batch: gathering rows excluded, scoring and answering
    /// included) ending at `now`; at the end of a window, the change to make, if any.
    /// Time between batches counts as idle, however long.
    pub fn record(&mut self, busy: Duration, now: Instant) -> Option<Change> {
        self.busy += busy;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW {
            return None;
        }
        let share = self.busy.as_secs_f64() / elapsed.as_secs_f64();
        (self.window_start, self.busy) = (now, Duration::ZERO);
        match (self.realtime, share) {
            (true, s) if s > self.leave_above => {
                self.realtime = false;
                Some(Change::Leave)
            }
            (false, s) if s < self.return_below => {
                self.realtime = true;
                Some(Change::Return)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds batches of `busy` every `every` for `span`; the changes in order.
    fn run(g: &mut Governor, t: &mut Instant, busy: Duration, every: Duration, span: Duration) -> Vec<Change> {
        let end = *t + span;
        let mut changes = Vec::new();
        while *t < end {
            *t += every;
            changes.extend(g.record(busy, *t));
        }
        changes
    }

    #[test]
    fn a_thread_busy_most_of_the_time_leaves_fifo_and_returns_when_idle_again() {
        let mut t = Instant::now();
        let mut g = Governor::new(t, 0.5);
        // 0.2 busy: stays.
        assert_eq!(run(&mut g, &mut t, MS, 5 * MS, 200 * MS), vec![]);
        assert!(g.realtime());
        // 0.8 busy: leaves once, within one window.
        assert_eq!(run(&mut g, &mut t, 4 * MS, 5 * MS, 60 * MS), vec![Change::Leave]);
        assert!(!g.realtime());
        assert_eq!(run(&mut g, &mut t, 4 * MS, 5 * MS, 200 * MS), vec![]);
        // 0.1 busy: returns once.
        assert_eq!(run(&mut g, &mut t, MS, 10 * MS, 200 * MS), vec![Change::Return]);
        assert!(g.realtime());
    }

    #[test]
    fn between_the_thresholds_nothing_changes_either_way() {
        let mut t = Instant::now();
        let mut g = Governor::new(t, 0.5);
        // 0.4 busy keeps SCHED_FIFO...
        assert_eq!(run(&mut g, &mut t, 2 * MS, 5 * MS, 500 * MS), vec![]);
        assert!(g.realtime());
        run(&mut g, &mut t, 5 * MS, 5 * MS, 60 * MS);
        assert!(!g.realtime());
        // ...and does not bring it back either.
        assert_eq!(run(&mut g, &mut t, 2 * MS, 5 * MS, 500 * MS), vec![]);
        assert!(!g.realtime());
    }

    #[test]
    fn at_max_busy_one_the_thread_never_leaves() {
        let mut t = Instant::now();
        let mut g = Governor::new(t, 1.0);
        assert_eq!(run(&mut g, &mut t, 5 * MS, 5 * MS, 500 * MS), vec![]);
        assert!(g.realtime());
    }

    #[test]
    fn a_long_idle_gap_counts_as_idle() {
        let mut t = Instant::now();
        let mut g = Governor::new(t, 0.5);
        run(&mut g, &mut t, 5 * MS, 5 * MS, 60 * MS);
        assert!(!g.realtime());
        // One batch after ten idle seconds: the window it closes was almost all idle.
        t += Duration::from_secs(10);
        assert_eq!(g.record(5 * MS, t), Some(Change::Return));
    }
}
