//! Per-window figures (`--window-ms`): a phase's requests grouped by their *intended*
//! send time into windows of a fixed width from the phase's start, so a request due in
//! the first second that is answered in the third still counts in the first (what the
//! server was offered then, and how it went for those requests). Windows never straddle
//! two phases: a phase's last window is cut at its end.
//!
//! A window keeps counts per outcome, the on-time 200s and 204s, and a latency histogram
//! of 2 significant digits (p50 and p99 within 1 %), made on the window's first request:
//! 3,328 counters (26 KiB) a window instead of the 3-digit run histograms' 23,552
//! (184 KiB), so [`MAX_WINDOWS`] bounds them to about 260 MiB.

use super::summary::{self, Counts, OnTime, Outcome};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Windows a run may have in all, so `--window-ms` cannot ask for unbounded memory.
pub const MAX_WINDOWS: u64 = 10_000;
/// Significant digits of a window's latency histogram.
const WINDOW_DIGITS: u8 = 2;

/// The windows of one phase. Single owner: the run's collector.
pub struct Windows {
    /// > 0.
    width: Duration,
    /// The phase's span; `tallies.len() == ceil(span / width)`.
    span: Duration,
    tallies: Vec<Tally>,
}

#[derive(Default)]
struct Tally {
    /// Per outcome, indexed like [`Outcome::ALL`].
    counts: [u64; Outcome::ALL.len()],
    on_time: OnTime,
    /// In µs, every outcome; `None` until the first request.
    latency: Option<Histogram<u64>>,
}

impl Windows {
    /// Windows of `width` (> 0) over a phase of `span`.
    pub fn new(width: Duration, span: Duration) -> Windows {
        let n = count(width, span);
        Windows { width, span, tallies: (0..n).map(|_| Tally::default()).collect() }
    }

    /// Records a request due `due` after the phase's start (less than its span, by the
    /// schedule's invariant; a later one would count in the last window).
    pub fn record(&mut self, due: Duration, outcome: Outcome, latency: Duration, in_time: bool) {
        let k = self.index(due);
        let t = &mut self.tallies[k];
        t.counts[outcome as usize] += 1;
        t.on_time.count(outcome, in_time);
        t.latency
            .get_or_insert_with(|| summary::histogram_with(WINDOW_DIGITS))
            .saturating_record(summary::micros(latency));
    }

    /// The window holding due offset `due`.
    pub fn index(&self, due: Duration) -> usize {
        let k = due.as_nanos() / self.width.as_nanos();
        usize::try_from(k).unwrap_or(usize::MAX).min(self.tallies.len() - 1)
    }

    pub fn summarize(&self) -> Vec<Window> {
        self.tallies.iter().enumerate().map(|(k, t)| self.window(k, t)).collect()
    }

    fn window(&self, k: usize, t: &Tally) -> Window {
        // k < MAX_WINDOWS.
        let start = self.width.saturating_mul(u32::try_from(k).unwrap_or(u32::MAX));
        let requests: u64 = t.counts.iter().sum();
        let at = |q: f64| t.latency.as_ref().map_or(0.0, |h| summary::quantile_ms(h, q));
        Window {
            start_s: start.as_secs_f64(),
            span_s: self.width.min(self.span - start).as_secs_f64(),
            requests,
            counts: Counts::of(|o| t.counts[o as usize]),
            on_time: t.on_time.clone(),
            on_time_share: summary::share(t.on_time.total(), requests),
            latency_ms: Quantiles { p50: at(0.5), p99: at(0.99) },
        }
    }
}

/// Windows of `width` (> 0) in `span`: `ceil(span / width)`, at least 1.
pub fn count(width: Duration, span: Duration) -> u64 {
    let n = span.as_nanos().div_ceil(width.as_nanos()).max(1);
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// One window in the JSON report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// From the phase's start.
    pub start_s: f64,
    /// The width, or less for a phase's last window.
    pub span_s: f64,
    /// Requests due in the window.
    pub requests: u64,
    pub counts: Counts,
    /// Of them, answered 200 or 204 within the deadline.
    pub on_time: OnTime,
    /// `on_time` over `requests`.
    pub on_time_share: f64,
    /// Every outcome, from the due time.
    pub latency_ms: Quantiles,
}

/// Milliseconds; zero when the window has no request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p99: f64,
}
