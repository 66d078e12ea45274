//! A circuit breaker in front of Redis: after `failures` calls in a row fail (an error
//! or a timeout), calls fail at once, without touching the network, for `open_ms`;
//! then one call at a time is let through as a probe until one succeeds.
//!
//! The point is the notice path's latency while Redis is down: without the breaker every
//! notice would wait out the full timeout; with it, only the probes do.
//!
//! Lock-free: the state is two atomics, read on every call. Times are milliseconds of a
//! monotonic clock supplied by the caller, so the tests drive it without sleeping.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

#[derive(Debug)]
pub struct Breaker {
    failures: u32,
    open_ms: i64,
    /// Failures in a row since the last success.
    streak: AtomicU32,
    /// While open: the monotonic ms before which calls fail fast; `i64::MIN` closed.
    open_until: AtomicI64,
    /// Times it opened (metrics).
    pub opened: AtomicU64,
}

/// What the breaker says about the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Closed: go ahead.
    Go,
    /// Open, and the wait is over: this caller probes; the others keep failing fast
    /// until its answer.
    Probe,
    /// Open: fail without calling.
    Refuse,
}

impl Breaker {
    pub fn new(failures: u32, open_ms: u64) -> Breaker {
        Breaker {
            failures: failures.max(1),
            open_ms: open_ms as i64,
            streak: AtomicU32::new(0),
            open_until: AtomicI64::new(i64::MIN),
            opened: AtomicU64::new(0),
        }
    }

    /// Whether a call at `now_ms` may go out.
    pub fn permit(&self, now_ms: i64) -> Permit {
        let until = self.open_until.load(Ordering::Acquire);
        if until == i64::MIN {
            return Permit::Go;
        }
        if now_ms < until {
            return Permit::Refuse;
        }
        // One prober per open period: whoever moves the deadline on probes; a probe
        // that never reports back (its task dropped) is retried after another period.
        match self.open_until.compare_exchange(until, now_ms + self.open_ms, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Permit::Probe,
            Err(_) => Permit::Refuse,
        }
    }

    /// The call succeeded: closed.
    pub fn success(&self) {
        self.streak.store(0, Ordering::Release);
        self.open_until.store(i64::MIN, Ordering::Release);
    }

    /// The call failed at `now_ms`: open once the streak reaches the threshold (a
    /// failed probe opens it again at once).
    pub fn failure(&self, now_ms: i64) {
        let streak = self.streak.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if streak >= self.failures {
            let was = self.open_until.swap(now_ms + self.open_ms, Ordering::AcqRel);
            if was == i64::MIN {
                self.opened.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != i64::MIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_streak_fails_fast_then_lets_one_probe_through() {
        let b = Breaker::new(3, 1000);
        assert_eq!(b.permit(0), Permit::Go);
        b.failure(0);
        b.failure(1);
        assert_eq!(b.permit(2), Permit::Go, "two failures of three: still closed");
        b.failure(2);
        assert!(b.is_open());
        assert_eq!(b.opened.load(Ordering::Relaxed), 1);
        assert_eq!(b.permit(500), Permit::Refuse);
        assert_eq!(b.permit(1001), Permit::Refuse, "open until 1002");
        assert_eq!(b.permit(1002), Permit::Probe);
        assert_eq!(b.permit(1003), Permit::Refuse, "one probe at a time");
        // The probe fails: open for another period from then.
        b.failure(1010);
        assert_eq!(b.permit(2009), Permit::Refuse);
        assert_eq!(b.permit(2010), Permit::Probe);
        assert_eq!(b.opened.load(Ordering::Relaxed), 1, "still the same outage");
        b.success();
        assert!(!b.is_open());
        assert_eq!(b.permit(2011), Permit::Go);
        // A success resets the streak: two more failures do not open it.
        b.failure(3000);
        b.failure(3001);
        assert_eq!(b.permit(3002), Permit::Go);
    }

    #[test]
    fn a_lost_probe_is_retried_after_another_period() {
        let b = Breaker::new(1, 100);
        b.failure(0);
        assert_eq!(b.permit(100), Permit::Probe);
        // Its task was dropped: neither success nor failure comes.
        assert_eq!(b.permit(150), Permit::Refuse);
        assert_eq!(b.permit(200), Permit::Probe);
    }
}
