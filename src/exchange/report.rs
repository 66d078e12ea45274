//! The report, computed from the ledger alone (and the catalog's goals): per bidder and
//! per campaign, totals, notice statuses, and per simulated hour.
//!
//! Definitions (per bidder, per campaign of the exchange's catalog, and in total):
//! - `bids`: bids received (on time or late, valid or not); `late`, `invalid` of them;
//! - `wins`: imps won; `win_rate` = wins / bids;
//! - `spend`: the clearing prices of billed impressions (a `bill` notice answered 200),
//!   CPM / 1000, each rounded to the micro-dollar as the bidder rounds it, USD;
//! - `impressions`: rendered wins; `clicks`: clicks answered 302; `conversions`:
//!   postbacks answered 200;
//! - `ecpm` = spend / impressions × 1000, `ecpc` = spend / clicks, `ecpa` = spend /
//!   conversions (null when the divisor is 0); `goal_cpc` / `goal_cpa` beside them;
//! - `expected_clicks` = Σ true pCTR over the impressions, `expected_conversions` =
//!   Σ pCTR × pCVR (the truth, not the `--click-boost`ed draws);
//! - `value` = goal CPC × expected clicks (CPC campaigns) or goal CPA × expected
//!   conversions (CPA campaigns), summed in totals; `surplus` = value − spend.
//!
//! Hours (`timeseries.json`): each ledger line counts in the simulated hour of its own
//! `ts_ms` (requests, bids and wins at the auction, spend at the render, clicks at the
//! click), from the run's `start_ts`.

use super::ledger::{NoticeKind, Outcome, Record, Run};
use crate::catalog::Catalog;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Counts and sums of one bidder, campaign or hour; see the module doc.
#[derive(Debug, Clone, Default, PartialEq)]
struct Acc {
    bids: u64,
    late: u64,
    invalid: u64,
    wins: u64,
    spend_micros: u64,
    impressions: u64,
    clicks: u64,
    conversions: u64,
    expected_clicks: f64,
    expected_conversions: f64,
    value: f64,
}

impl Acc {
    fn add(&mut self, o: &Acc) {
        self.bids += o.bids;
        self.late += o.late;
        self.invalid += o.invalid;
        self.wins += o.wins;
        self.spend_micros += o.spend_micros;
        self.impressions += o.impressions;
        self.clicks += o.clicks;
        self.conversions += o.conversions;
        self.expected_clicks += o.expected_clicks;
        self.expected_conversions += o.expected_conversions;
        self.value += o.value;
    }

    fn stats(&self) -> Stats {
        let ratio = |a: f64, b: u64| (b > 0).then(|| a / b as f64);
        let spend = self.spend_micros as f64 / 1e6;
        Stats {
            bids: self.bids,
            late: self.late,
            invalid: self.invalid,
            wins: self.wins,
            win_rate: ratio(self.wins as f64, self.bids),
            spend,
            impressions: self.impressions,
            clicks: self.clicks,
            conversions: self.conversions,
            ecpm: ratio(spend * 1000.0, self.impressions),
            ecpc: ratio(spend, self.clicks),
            ecpa: ratio(spend, self.conversions),
            expected_clicks: self.expected_clicks,
            expected_conversions: self.expected_conversions,
            value: self.value,
            surplus: self.value - spend,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub bids: u64,
    pub late: u64,
    pub invalid: u64,
    pub wins: u64,
    pub win_rate: Option<f64>,
    pub spend: f64,
    pub impressions: u64,
    pub clicks: u64,
    pub conversions: u64,
    pub ecpm: Option<f64>,
    pub ecpc: Option<f64>,
    pub ecpa: Option<f64>,
    pub expected_clicks: f64,
    pub expected_conversions: f64,
    pub value: f64,
    pub surplus: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignReport {
    pub bidder: usize,
    pub campaign: String,
    pub goal_cpc: Option<f64>,
    pub goal_cpa: Option<f64>,
    #[serde(flatten)]
    pub stats: Stats,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BidderReport {
    pub bidder: usize,
    pub url: String,
    /// Bid requests sent, and how they were answered.
    pub requests: u64,
    pub answered_200: u64,
    pub answered_204: u64,
    pub late_answers: u64,
    pub errors: u64,
    #[serde(flatten)]
    pub stats: Stats,
    /// By spend, highest first.
    pub campaigns: Vec<CampaignReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hour {
    pub hour: usize,
    /// Unix seconds of its start.
    pub ts: i64,
    pub requests: u64,
    pub bids: u64,
    pub wins: u64,
    pub win_rate: Option<f64>,
    pub spend: f64,
    pub clicks: u64,
}

/// How the exchange itself kept time (absent for a report rebuilt from a ledger).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Wall time of the whole run, the final drain of events included.
    pub wall_s: f64,
    /// Wall time until the last request was sent, and the rate achieved over it.
    pub send_s: f64,
    pub requests_per_s: f64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub run: Run,
    pub timing: Option<Timing>,
    pub requests: u64,
    pub totals: Stats,
    pub bidders: Vec<BidderReport>,
    /// Calls by kind (win, bill, loss, click, conv) and final status ("none": no answer).
    pub notices: BTreeMap<String, BTreeMap<String, u64>>,
    pub hours: Vec<Hour>,
    /// Billing notices sent again to another instance of a fleet (`--replay-bills`).
    #[serde(default)]
    pub replays: Replays,
}

/// What the replayed billing notices met: every one should be refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Replays {
    pub sent: u64,
    /// Answered 200 "ok": the fleet charged the impression twice.
    pub applied: u64,
    /// Answered 200 "already applied" (or another refusal).
    pub refused: u64,
    /// No answer, or an error status.
    pub failed: u64,
}

/// Builds the report from a ledger's records (the `run` line first), read one at a time
/// (a long run's ledger need not fit in memory), and the catalog.
pub fn build(records: impl IntoIterator<Item = anyhow::Result<Record>>, catalog: &Catalog) -> anyhow::Result<Report> {
    let mut records = records.into_iter();
    let Some(Record::Run(run)) = records.next().transpose()? else {
        anyhow::bail!("the ledger does not start with its run line")
    };
    let start_ms = run.start_ts * 1000;
    let hours_n = run.days as usize * 24;
    let hour_of = |ts_ms: i64| ((ts_ms - start_ms).max(0) / 3_600_000).min(hours_n as i64 - 1) as usize;
    let mut hours = vec![(0u64, Acc::default()); hours_n];
    let mut camps: BTreeMap<(usize, String), Acc> = BTreeMap::new();
    let mut answers = vec![[0u64; 5]; run.bidders.len()];
    let mut notices: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut billed: HashSet<(usize, String)> = HashSet::new();
    let mut requests = 0;
    let mut replays = Replays::default();
    let mut count = |kind: &str, status: Option<u16>| {
        let s = status.map_or("none".to_string(), |s| s.to_string());
        *notices.entry(kind.to_string()).or_default().entry(s).or_default() += 1;
    };
    let campaign_of_crid: HashMap<&str, &str> =
        catalog.creatives.iter().map(|c| (c.id.as_str(), c.campaign_id.as_str())).collect();
    let key = |bidder: usize, cid: Option<&str>| (bidder, cid.unwrap_or("(unknown)").to_string());
    for r in records {
        match &r? {
            Record::Run(_) => {}
            Record::Request(q) => {
                requests += 1;
                hours[hour_of(q.ts_ms)].0 += 1;
                for a in &q.answers {
                    let n = &mut answers[a.bidder];
                    n[0] += 1;
                    n[1] += u64::from(a.status == Some(200));
                    n[2] += u64::from(a.status == Some(204));
                    n[3] += u64::from(a.late);
                    n[4] += u64::from(a.error.is_some() && !a.late);
                }
            }
            Record::Auction(a) => {
                let h = &mut hours[hour_of(a.ts_ms)].1;
                for e in a.entries.iter().filter(|e| e.bid_id.is_some()) {
                    let cid = e.crid.as_deref().and_then(|c| campaign_of_crid.get(c).copied()).or(e.cid.as_deref());
                    let acc = camps.entry(key(e.bidder, cid)).or_default();
                    let won = e.outcome == Outcome::Bid && e.loss.is_none();
                    for acc in [acc, &mut *h] {
                        acc.bids += 1;
                        acc.late += u64::from(e.outcome == Outcome::Late);
                        acc.invalid += u64::from(e.outcome == Outcome::Invalid);
                        acc.wins += u64::from(won);
                    }
                }
            }
            Record::Notice(n) => {
                count(label(n.kind), n.status);
                let billing = n.kind == NoticeKind::Bill && n.status == Some(200);
                if billing && billed.insert((n.bid.bidder, n.bid.bid_id.clone())) {
                    let micros = micro_usd(n.price.unwrap_or(0.0));
                    camps.entry(key(n.bid.bidder, n.bid.cid.as_deref())).or_default().spend_micros += micros;
                    hours[hour_of(n.ts_ms)].1.spend_micros += micros;
                }
            }
            Record::Impression(i) => {
                let acc = camps.entry(key(i.bid.bidder, i.bid.cid.as_deref())).or_default();
                acc.impressions += 1;
                acc.expected_clicks += i.pctr;
                acc.expected_conversions += i.pctr * i.pcvr;
            }
            Record::Click(c) => {
                count("click", c.status);
                if c.status == Some(302) {
                    camps.entry(key(c.bid.bidder, c.bid.cid.as_deref())).or_default().clicks += 1;
                    hours[hour_of(c.ts_ms)].1.clicks += 1;
                }
            }
            Record::Replay(r) => {
                replays.sent += 1;
                match r.status {
                    _ if r.applied => replays.applied += 1,
                    Some(200 | 409) => replays.refused += 1,
                    _ => replays.failed += 1,
                }
            }
            Record::Conversion(c) => {
                count("conv", c.status);
                if c.status == Some(200) {
                    camps.entry(key(c.bid.bidder, c.bid.cid.as_deref())).or_default().conversions += 1;
                }
            }
        }
    }
    let goals: HashMap<&str, (f64, f64)> =
        catalog.campaigns.iter().map(|c| (c.id.as_str(), (c.goal_cpc, c.goal_cpa))).collect();
    let mut totals = Acc::default();
    let mut bidders: Vec<BidderReport> = (0..run.bidders.len())
        .map(|b| {
            let n = answers[b];
            BidderReport {
                bidder: b,
                url: run.bidders[b].clone(),
                requests: n[0],
                answered_200: n[1],
                answered_204: n[2],
                late_answers: n[3],
                errors: n[4],
                stats: Acc::default().stats(),
                campaigns: Vec::new(),
            }
        })
        .collect();
    let mut per_bidder = vec![Acc::default(); run.bidders.len()];
    for ((b, cid), mut acc) in camps {
        let (cpc, cpa) = goals.get(cid.as_str()).copied().unwrap_or((0.0, 0.0));
        acc.value = if cpa > 0.0 { cpa * acc.expected_conversions } else { cpc * acc.expected_clicks };
        per_bidder[b].add(&acc);
        totals.add(&acc);
        let (goal_cpc, goal_cpa) = ((cpc > 0.0).then_some(cpc), (cpa > 0.0).then_some(cpa));
        bidders[b].campaigns.push(CampaignReport { bidder: b, campaign: cid, goal_cpc, goal_cpa, stats: acc.stats() });
    }
    for (report, acc) in bidders.iter_mut().zip(&per_bidder) {
        report.stats = acc.stats();
        report.campaigns.sort_by(|a, b| b.stats.spend.total_cmp(&a.stats.spend).then(a.campaign.cmp(&b.campaign)));
    }
    let hours = hours
        .into_iter()
        .enumerate()
        .map(|(i, (requests, acc))| Hour {
            hour: i,
            ts: run.start_ts + 3600 * i as i64,
            requests,
            bids: acc.bids,
            wins: acc.wins,
            win_rate: acc.stats().win_rate,
            spend: acc.spend_micros as f64 / 1e6,
            clicks: acc.clicks,
        })
        .collect();
    Ok(Report { run, timing: None, requests, totals: totals.stats(), bidders, notices, hours, replays })
}

pub fn label(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Win => "win",
        NoticeKind::Bill => "bill",
        NoticeKind::Loss => "loss",
    }
}

/// What one impression at `cpm` costs, in micro-USD, rounded as the bidder rounds it.
pub fn micro_usd(cpm: f64) -> u64 {
    (cpm / 1000.0 * 1e6).round() as u64
}
