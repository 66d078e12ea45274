//! `report.md` and the one-line summary on stderr, both from a [`Report`].

use super::report::{Report, Stats};
use std::fmt::Write as _;

/// Campaigns listed in `report.md`.
pub const TOP_CAMPAIGNS: usize = 20;

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.digits$}"))
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |v| format!("{:.1} %", v * 100.0))
}

/// The summary line: wall time, rate achieved, the schedule's lateness, outcomes,
/// notice statuses.
pub fn summary(r: &Report) -> String {
    let t = &r.totals;
    let mut line = format!("exchange: {} requests", r.requests);
    if let Some(tm) = &r.timing {
        let _ = write!(
            line,
            " in {:.1} s ({:.0}/s over {:.1} s of sending; schedule late p99 {:.2} ms, max {:.1} ms)",
            tm.wall_s, tm.requests_per_s, tm.send_s, tm.lag_p99_ms, tm.lag_max_ms
        );
    }
    let _ = write!(
        line,
        ", {} bids ({} late, {} invalid), {} wins ({}), spend {:.4} USD, {} impressions, {} clicks, {} conversions; calls:",
        t.bids,
        t.late,
        t.invalid,
        t.wins,
        pct(t.win_rate),
        t.spend,
        t.impressions,
        t.clicks,
        t.conversions
    );
    for (kind, statuses) in &r.notices {
        let s: Vec<String> = statuses.iter().map(|(status, n)| format!("{status} x{n}")).collect();
        let _ = write!(line, " {kind} {}", s.join(" "));
        line.push(';');
    }
    line.pop();
    let rp = &r.replays;
    if rp.sent > 0 {
        let _ = write!(
            line,
            "; bills replayed to another instance: {} sent, {} refused, {} applied again, {} failed",
            rp.sent, rp.refused, rp.applied, rp.failed
        );
    }
    line
}

fn stats_row(label: &str, s: &Stats, goal: &str) -> String {
    format!(
        "| {label} | {} | {} | {} | {} | {:.4} | {} | {} | {} | {} | {} | {} | {goal} | {:.2} | {:.3} | {:.4} | {:.4} |\n",
        s.bids,
        s.wins,
        pct(s.win_rate),
        s.late + s.invalid,
        s.spend,
        s.impressions,
        s.clicks,
        s.conversions,
        opt(s.ecpm, 3),
        opt(s.ecpc, 3),
        opt(s.ecpa, 2),
        s.expected_clicks,
        s.expected_conversions,
        s.value,
        s.surplus,
    )
}

const STATS_HEAD: &str = "| | bids | wins | win rate | late + invalid | spend USD | impr. | clicks | conv. | eCPM | eCPC | eCPA | goal | exp. clicks | exp. conv. | value USD | surplus USD |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";

/// The Markdown report: totals per bidder, notice statuses, the hourly table and the top
/// campaigns by spend.
pub fn render(r: &Report) -> String {
    let mut md = String::new();
    let run = &r.run;
    let _ = writeln!(md, "# ctrbid exchange report\n");
    let _ = writeln!(
        md,
        "{} requests over {} simulated day(s) from Unix {} (seed {}), {} requests/s; landscape: {}; first-price share {}; render rate {}; click boost {}.\n",
        r.requests,
        run.days,
        run.start_ts,
        run.seed,
        run.rate,
        if run.landscape.enabled {
            format!("median {} × floor, sigma {}", run.landscape.median, run.landscape.sigma)
        } else {
            "off".to_string()
        },
        run.first_price_share,
        run.render_rate,
        run.click_boost
    );
    if let Some(t) = &r.timing {
        let _ = writeln!(
            md,
            "Wall time {:.1} s, {:.1} s of it sending ({:.0} requests/s); the exchange's own schedule was late by p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms.\n",
            t.wall_s, t.send_s, t.requests_per_s, t.lag_p50_ms, t.lag_p99_ms, t.lag_max_ms
        );
    }
    md.push_str("## Totals\n\n");
    md.push_str(STATS_HEAD);
    for b in &r.bidders {
        md.push_str(&stats_row(&format!("bidder {} ({})", b.bidder, b.url), &b.stats, ""));
    }
    md.push_str(&stats_row("**all**", &r.totals, ""));
    md.push_str("\n| bidder | requests | 200 | 204 | late | errors |\n|---|---|---|---|---|---|\n");
    for b in &r.bidders {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            b.url, b.requests, b.answered_200, b.answered_204, b.late_answers, b.errors
        );
    }
    md.push_str("\n## Calls by status\n\n| kind | statuses |\n|---|---|\n");
    for (kind, statuses) in &r.notices {
        let s: Vec<String> = statuses.iter().map(|(status, n)| format!("{status}: {n}")).collect();
        let _ = writeln!(md, "| {kind} | {} |", s.join(", "));
    }
    md.push_str("\n## By simulated hour\n\n| hour (UTC) | requests | bids | wins | win rate | spend USD | clicks |\n|---|---|---|---|---|---|---|\n");
    for h in &r.hours {
        let _ = writeln!(
            md,
            "| {} (day {}, {:02}:00) | {} | {} | {} | {} | {:.4} | {} |",
            h.hour,
            h.hour / 24 + 1,
            h.hour % 24,
            h.requests,
            h.bids,
            h.wins,
            pct(h.win_rate),
            h.spend,
            h.clicks
        );
    }
    let mut campaigns: Vec<_> = r.bidders.iter().flat_map(|b| &b.campaigns).collect();
    campaigns.sort_by(|a, b| b.stats.spend.total_cmp(&a.stats.spend).then(a.campaign.cmp(&b.campaign)));
    let _ = writeln!(md, "\n## Top {TOP_CAMPAIGNS} campaigns by spend\n");
    md.push_str(STATS_HEAD);
    for c in campaigns.iter().take(TOP_CAMPAIGNS) {
        let goal = match (c.goal_cpc, c.goal_cpa) {
            (_, Some(cpa)) => format!("CPA {cpa:.2}"),
            (Some(cpc), _) => format!("CPC {cpc:.2}"),
            _ => "–".to_string(),
        };
        md.push_str(&stats_row(&format!("{} (bidder {})", c.campaign, c.bidder), &c.stats, &goal));
    }
    md
}
