//! The text report of a run (what `ctrbid loadgen` prints).

use super::summary::{Percentiles, Summary};
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
        write!(f, "answered 200/204 within {} ms: {}", self.deadline_ms, percent(self.on_time_share))?;
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
        match &self.first_error {
            Some(err) => writeln!(f, "first connection error: {err}"),
            None => Ok(()),
        }
    }
}

fn row(f: &mut fmt::Formatter<'_>, name: &str, p: &Percentiles) -> fmt::Result {
    let label = format!("  {name} ({})", p.count);
    writeln!(f, "{label:<31} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}", p.p50, p.p90, p.p99, p.p99_9, p.max)
}

fn percent(share: f64) -> String {
    format!("{:.2} %", share * 100.0)
}
