//! The text report of a run (what `ctrbid loadgen` prints): the totals, then, for a run
//! of several phases, a line per phase, and with `--window-ms` a table of windows per
//! phase.

use super::summary::{Counts, Percentiles, PhaseSummary, Summary};
use super::window::Window;
use std::fmt;

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "offered {:.1} req/s, achieved {:.1} req/s: {} requests recorded over {:.2} s, {} answered",
            self.offered_rate, self.achieved_rate, self.requests, self.elapsed_s, self.answered
        )?;
        writeln!(
            f,
            "status 200: {}, 204: {}, other 4xx: {}, 5xx: {}, other: {}; connection errors: {}, refused: {}, timeouts: {}, unsent: {}",
            c.ok, c.no_content, c.client_error, c.server_error, c.other_status, c.errors, c.refused, c.timeouts, c.unsent
        )?;
        write!(
            f,
            "answered 200/204 within {} ms: {} (200: {}, 204: {})",
            self.deadline_ms,
            percent(self.on_time_share),
            self.on_time.ok,
            self.on_time.no_content
        )?;
        for w in &self.within[1..] {
            write!(f, "; within {} ms: {}", w.ms, percent(w.share))?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "latency from intended send (ms) {:>9} {:>9} {:>9} {:>9} {:>9}",
            "p50", "p90", "p99", "p99.9", "max"
        )?;
        row(f, "all", &self.latency_ms.all)?;
        row(f, "200 only", &self.latency_ms.ok)?;
        writeln!(f, "generator start lag (ms): p99 {:.3}, max {:.3}", self.start_lag_ms.p99, self.start_lag_ms.max)?;
        if let Some(err) = &self.first_error {
            writeln!(f, "first connection error: {err}")?;
        }
        if self.phases.len() > 1 {
            for (k, p) in self.phases.iter().enumerate() {
                phase_line(f, k, p)?;
            }
        }
        for (k, p) in self.phases.iter().enumerate().filter(|(_, p)| !p.windows.is_empty()) {
            windows_table(f, k, p)?;
        }
        Ok(())
    }
}

fn row(f: &mut fmt::Formatter<'_>, name: &str, p: &Percentiles) -> fmt::Result {
    let label = format!("  {name} ({})", p.count);
    writeln!(f, "{label:<31} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}", p.p50, p.p90, p.p99, p.p99_9, p.max)
}

/// `phase 2: 1000 req/s from 30 s for 5 s: ...`, numbered from 1.
fn phase_line(f: &mut fmt::Formatter<'_>, k: usize, p: &PhaseSummary) -> fmt::Result {
    let s = &p.figures;
    let c = &s.counts;
    writeln!(
        f,
        "phase {}: {} req/s from {} s for {} s: {} requests, 200: {}, 204: {}, within {} ms: {} (200: {}, 204: {}), p50 {:.3} ms, p99 {:.3} ms, failed: {}",
        k + 1,
        s.offered_rate,
        p.start_s,
        p.duration_s,
        s.requests,
        c.ok,
        c.no_content,
        s.deadline_ms,
        percent(s.on_time_share),
        s.on_time.ok,
        s.on_time.no_content,
        s.latency_ms.all.p50,
        s.latency_ms.all.p99,
        failed(c)
    )
}

fn windows_table(f: &mut fmt::Formatter<'_>, k: usize, p: &PhaseSummary) -> fmt::Result {
    writeln!(
        f,
        "phase {} by intended send time (s from its start) {:>8} {:>7} {:>7} {:>6} {:>6} {:>6} {:>7} {:>7} {:>9} {:>9} {:>9}",
        k + 1,
        "requests",
        "200",
        "204",
        "other",
        "5xx",
        "conn",
        "timeout",
        "unsent",
        "on time",
        "p50 ms",
        "p99 ms"
    )?;
    for w in &p.windows {
        window_row(f, w)?;
    }
    Ok(())
}

fn window_row(f: &mut fmt::Formatter<'_>, w: &Window) -> fmt::Result {
    let c = &w.counts;
    let span = format!("  {:.3}-{:.3}", w.start_s, w.start_s + w.span_s);
    writeln!(
        f,
        "{span:<49} {:>8} {:>7} {:>7} {:>6} {:>6} {:>6} {:>7} {:>7} {:>9} {:>9.3} {:>9.3}",
        w.requests,
        c.ok,
        c.no_content,
        c.other_status + c.client_error,
        c.server_error,
        c.errors + c.refused,
        c.timeouts,
        c.unsent,
        percent(w.on_time_share),
        w.latency_ms.p50,
        w.latency_ms.p99
    )
}

/// Requests that got no 200 or 204.
fn failed(c: &Counts) -> u64 {
    c.other_status + c.client_error + c.server_error + c.errors + c.refused + c.timeouts + c.unsent
}

fn percent(share: f64) -> String {
    format!("{:.2} %", share * 100.0)
}
