//! When each request is due. A run is a warm-up then one or more [`Phase`]s, back to
//! back; request `j` of a segment (the warm-up or a phase) at `rate` per second is due
//! `j / rate` seconds after the segment's start, whatever happened to the requests
//! before it (open loop). A segment of span `d` holds `round(rate * d)` requests, all
//! due before its end; the next segment starts exactly at that end. The warm-up runs
//! at the first phase's rate and is sent but not recorded; every phase is recorded.

use super::phase::Phase;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The warm-up (always first, possibly empty) then the phases, in due order.
    /// Invariants: `segments[k + 1].first == segments[k].first + segments[k].count` and
    /// `segments[k + 1].start == segments[k].start + segments[k].span`; every request of
    /// segment `k` is due in `[start, start + span)`.
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    /// Offset from the start of the run.
    start: Duration,
    span: Duration,
    /// Requests per second, finite and > 0.
    rate: f64,
    /// Index of the segment's first request in the run.
    first: u64,
    /// `round(rate * span)`.
    count: u64,
}

impl Segment {
    fn new(start: Duration, span: Duration, rate: f64, first: u64) -> Segment {
        Segment { start, span, rate, first, count: (rate * span.as_secs_f64()).round() as u64 }
    }

    fn end(&self) -> u64 {
        self.first + self.count
    }

    /// Offset of its `j`-th request from its start, to the nearest nanosecond:
    /// `j * 1e9 / rate` is exact wherever the quotient is a whole number of nanoseconds.
    fn offset(&self, j: u64) -> Duration {
        Duration::from_nanos((j as f64 * 1e9 / self.rate).round() as u64)
    }
}

impl Schedule {
    /// `phases` is not empty and each one is valid (checked by [`super::Plan::validate`]).
    pub fn new(warmup: Duration, phases: &[Phase]) -> Schedule {
        let mut segments = vec![Segment::new(Duration::ZERO, warmup, phases[0].rate, 0)];
        for p in phases {
            let last = segments[segments.len() - 1];
            segments.push(Segment::new(last.start + last.span, p.duration, p.rate, last.end()));
        }
        Schedule { segments }
    }

    /// Offset of request `i` from the start of the run; `i < total()`.
    pub fn due(&self, i: u64) -> Duration {
        let s = self.segment_of(i);
        s.start + s.offset(i - s.first)
    }

    /// The phase request `i` belongs to (0 = the first phase), or `None` in the warm-up.
    pub fn phase_of(&self, i: u64) -> Option<usize> {
        let k = self.segments.partition_point(|s| s.end() <= i);
        (k >= 1).then(|| k - 1)
    }

    /// Offset of request `i` from the start of its phase; `i` is recorded.
    pub fn offset_in_phase(&self, i: u64) -> Duration {
        let s = self.segment_of(i);
        s.offset(i - s.first)
    }

    /// Offset at which phase `k` starts from the start of the run.
    pub fn phase_start(&self, k: usize) -> Duration {
        self.segments[k + 1].start
    }

    /// Requests due in phase `k`.
    pub fn phase_requests(&self, k: usize) -> u64 {
        self.segments[k + 1].count
    }

    /// Whether request `i` is measured (due after the warm-up).
    pub fn is_recorded(&self, i: u64) -> bool {
        i >= self.warmup()
    }

    /// Requests sent in the warm-up.
    pub fn warmup(&self) -> u64 {
        self.segments[0].count
    }

    /// Requests measured.
    pub fn recorded(&self) -> u64 {
        self.total() - self.warmup()
    }

    /// Requests sent in all.
    pub fn total(&self) -> u64 {
        self.segments[self.segments.len() - 1].end()
    }

    /// Offset at which measuring starts: the end of the warm-up, the first phase's start.
    pub fn measure_start(&self) -> Duration {
        self.phase_start(0)
    }

    /// The segment holding request `i` (the last one for `i >= total()`).
    fn segment_of(&self, i: u64) -> &Segment {
        let k = self.segments.partition_point(|s| s.end() <= i);
        &self.segments[k.min(self.segments.len() - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn one(rate: f64, warmup: f64, duration: f64) -> Schedule {
        Schedule::new(secs(warmup), &[Phase { rate, duration: secs(duration) }])
    }

    #[test]
    fn counts_round_to_whole_requests() {
        let check = |rate: f64, warmup: f64, duration: f64, expected: (u64, u64, u64)| {
            let s = one(rate, warmup, duration);
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
    fn request_i_is_due_i_over_rate_seconds_into_its_segment() {
        let s = one(200.0, 1.0, 2.0);
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_millis(5));
        assert_eq!(s.due(200), Duration::from_secs(1));
        assert_eq!(s.due(599), Duration::from_millis(2995));
        assert_eq!(s.measure_start(), Duration::from_secs(1));
        // The first recorded request is due at the warm-up's end even when the warm-up's
        // requests do not fill it evenly.
        let s = one(3.0, 0.5, 1.0);
        assert_eq!((s.warmup(), s.due(1), s.due(2)), (2, Duration::from_nanos(333_333_333), ms(500)));
    }

    #[test]
    fn due_times_never_go_backwards_and_keep_the_rate() {
        let s = one(12_345.6, 0.0, 10.0);
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
        let s = one(100.0, 0.5, 1.0);
        assert!(!s.is_recorded(0));
        assert!(!s.is_recorded(49));
        assert!(s.is_recorded(50));
        assert!(s.is_recorded(149));
        assert_eq!((0..s.total()).filter(|&i| s.is_recorded(i)).count() as u64, s.recorded());
    }

    #[test]
    fn phases_follow_each_other_at_their_own_rates() {
        // 0.5 s of warm-up at 4/s, then 4/s for 1 s, then 10/s for 0.5 s, then 1/s for 2.4 s.
        let p = |rate: f64, d: f64| Phase { rate, duration: secs(d) };
        let s = Schedule::new(secs(0.5), &[p(4.0, 1.0), p(10.0, 0.5), p(1.0, 2.4)]);
        assert_eq!((s.warmup(), s.recorded(), s.total()), (2, 4 + 5 + 2, 13));
        let check = |i: u64, due_ms: u64, phase: Option<usize>, in_phase_ms: u64| {
            assert_eq!((s.due(i), s.phase_of(i)), (ms(due_ms), phase), "request {i}");
            if phase.is_some() {
                assert_eq!(s.offset_in_phase(i), ms(in_phase_ms), "request {i}");
            }
        };
        check(0, 0, None, 0);
        check(1, 250, None, 0);
        check(2, 500, Some(0), 0);
        check(5, 1250, Some(0), 750);
        // Phase 1 starts exactly where phase 0 ends: 0.5 + 1.
        check(6, 1500, Some(1), 0);
        check(10, 1900, Some(1), 400);
        check(11, 2000, Some(2), 0);
        check(12, 3000, Some(2), 1000);
        assert_eq!([s.phase_start(0), s.phase_start(1), s.phase_start(2)], [ms(500), ms(1500), ms(2000)]);
        assert_eq!([s.phase_requests(0), s.phase_requests(1), s.phase_requests(2)], [4, 5, 2]);
        assert_eq!(s.measure_start(), ms(500));
    }
}
