//! When each request is due. Request `i` of a run at `rate` per second is due `i / rate`
//! seconds after the start, whatever happened to the requests before it (open loop).
//! The first [`Schedule::warmup`] requests are sent but not recorded; the
//! [`Schedule::recorded`] after them are.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Requests per second, finite and > 0.
    rate: f64,
    /// Requests due during the warm-up: `round(rate * warmup_s)`.
    warmup: u64,
    /// Requests due in the whole run, warm-up included: `warmup + round(rate * duration_s)`.
    total: u64,
}

impl Schedule {
    /// `rate` must be finite and > 0 (checked by [`super::Plan::validate`]).
    pub fn new(rate: f64, warmup: Duration, duration: Duration) -> Schedule {
        let warmup = count(rate, warmup);
        Schedule { rate, warmup, total: warmup + count(rate, duration) }
    }

    /// Offset of request `i` from the start of the run.
    pub fn due(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// Whether request `i` is measured (due after the warm-up).
    pub fn is_recorded(&self, i: u64) -> bool {
        i >= self.warmup
    }

    /// Requests sent in the warm-up.
    pub fn warmup(&self) -> u64 {
        self.warmup
    }

    /// Requests measured.
    pub fn recorded(&self) -> u64 {
        self.total - self.warmup
    }

    /// Requests sent in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Offset at which measuring starts: the due time of the first recorded request.
    pub fn measure_start(&self) -> Duration {
        self.due(self.warmup)
    }
}

/// Requests due in `span` at `rate`, to the nearest whole request.
fn count(rate: f64, span: Duration) -> u64 {
    (rate * span.as_secs_f64()).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn counts_round_to_whole_requests() {
        let check = |rate: f64, warmup: f64, duration: f64, expected: (u64, u64, u64)| {
            let s = Schedule::new(rate, secs(warmup), secs(duration));
            assert_eq!(
                (s.warmup(), s.recorded(), s.total()),
                expected,
                "rate {rate} warmup {warmup} duration {duration}"
            );
        };
        check(200.0, 0.0, 2.0, (0, 400, 400));
        check(1000.0, 5.0, 30.0, (5000, 30000, 35000));
        check(333.3, 1.0, 2.0, (333, 667, 1000));
        check(0.5, 0.0, 3.0, (0, 2, 2));
        check(7000.7, 0.25, 0.5, (1750, 3500, 5250));
    }

    #[test]
    fn request_i_is_due_i_over_rate_seconds_in() {
        let s = Schedule::new(200.0, secs(1.0), secs(2.0));
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_millis(5));
        assert_eq!(s.due(200), Duration::from_secs(1));
        assert_eq!(s.due(599), Duration::from_millis(2995));
        assert_eq!(s.measure_start(), Duration::from_secs(1));
    }

    #[test]
    fn due_times_never_go_backwards_and_keep_the_rate() {
        let s = Schedule::new(12_345.6, secs(0.0), secs(10.0));
        let mut last = Duration::ZERO;
        for i in 0..s.total() {
            let due = s.due(i);
            assert!(due >= last, "request {i}");
            last = due;
        }
        let expected = (s.total() - 1) as f64 / 12_345.6;
        assert!((last.as_secs_f64() - expected).abs() < 1e-6);
    }

    #[test]
    fn only_requests_after_the_warmup_are_recorded() {
        let s = Schedule::new(100.0, secs(0.5), secs(1.0));
        assert!(!s.is_recorded(0));
        assert!(!s.is_recorded(49));
        assert!(s.is_recorded(50));
        assert!(s.is_recorded(149));
        assert_eq!((0..s.total()).filter(|&i| s.is_recorded(i)).count() as u64, s.recorded());
    }
}
