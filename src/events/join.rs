//! Bids joined with what came back of them: the training rows of the bidder's own log
//! (`ctrbid features --events`).
//!
//! A row is an **impression**: a logged bid that was billed (the exchange calls `burl`
//! when the ad renders) or clicked (a click proves the ad was shown even when the
//! billing notice never came: some exchanges bill late or not per impression). A won
//! bid that was neither is not a row: it may not have rendered. Its features are the
//! logged row, exactly as the model scored it; its labels are whether it was clicked
//! and whether that click converted (the bidder only accepts a conversion inside the
//! attribution window of its click, so none here is late). Rows come out in bid time
//! order.
//!
//! What can go wrong in a real log, and what happens to it (each counted in
//! [`JoinStats`]): a record repeated (a notice retried after the log failed to
//! acknowledge it) counts once; a notice whose bid record was sampled out or lost has
//! no features and is skipped; a conversion without a click is kept as a conversion of
//! that click (the click's record was lost: the conversion's signed click id proves
//! there was one); bids too recent for their labels (within `label_wait` of the log's
//! last event: their clicks may still come) are left out rather than labelled
//! negative.
//!
//! **Selection bias.** The log holds only what the bidder chose to bid on and won:
//! the rows are the auctions its own model valued highest among its candidates, and
//! that the market let it win. A model retrained on them sees few of the impressions
//! it would rate low, so its errors there go uncorrected. Each row carries the
//! propensity of its choice (1 for the greedy policy), so a share of exploration bids
//! (`bidding.explore_share`) can be reweighted by it.
//!
//! **A fleet's logs.** Each instance writes its own log, and a bid's notices reach
//! whichever instance the load balancer picks: the join reads every instance's log
//! ([`join`] takes several directories) and pairs records by bid id wherever they are.
//! Bid ids stay apart across instances: each starts its sequence at its start time in
//! nanoseconds times 2^16, so two instances started t ns apart share ids only after
//! t x 65,536 bids (6.5e10 for a millisecond). A notice two instances both applied (a
//! replay while Redis was away) counts once, as any repeated record.
//!
//! Memory: every bid record of the log is held until the end (its row may be labelled
//! by a notice anywhere later in the log): about 300 bytes a bid.

use super::{Event, NoticeKind};
use crate::eventlog::Reader;
use std::collections::HashMap;
use std::path::Path;

/// One training row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub bid: u64,
    pub ts_ms: i64,
    pub campaign: String,
    pub creative: String,
    pub cat: Vec<i64>,
    pub num: Vec<f32>,
    pub click: bool,
    pub conv: bool,
    /// What the model predicted when it bid.
    pub pctr: f32,
    pub pcvr: f32,
    pub propensity: f32,
    /// The clearing price billed, CPM; NaN when only a click showed the impression.
    pub price: f64,
}

/// What the join found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct JoinStats {
    pub records: u64,
    pub bids: u64,
    /// Bid records of a bid id already seen.
    pub duplicate_bids: u64,
    /// Bid records of another feature spec than the one asked for.
    pub other_spec: u64,
    pub wins: u64,
    pub bills: u64,
    pub losses: u64,
    pub clicks: u64,
    pub conversions: u64,
    /// Notice records of a (kind, bid) already seen.
    pub duplicate_notices: u64,
    /// Bids with notices but no bid record (sampled out, lost, or before the log).
    pub notices_without_bid: u64,
    /// Impressions shown by a click alone (no billing notice).
    pub shown_by_click_only: u64,
    /// Won but neither billed nor clicked: not rows.
    pub won_not_shown: u64,
    /// Conversions whose click record is missing (kept: the click id proves the click).
    pub conversions_without_click: u64,
    /// Impressions left out as too recent for their labels.
    pub too_recent: u64,
    pub rows: u64,
    pub clicked_rows: u64,
    pub converted_rows: u64,
}

/// What came back for one bid.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    won: bool,
    billed: Option<f64>,
    clicked: bool,
    converted: bool,
}

/// A logged bid, owned.
struct Bid {
    ts_ms: i64,
    campaign: String,
    creative: String,
    cat: Vec<i64>,
    num: Vec<f32>,
    pctr: f32,
    pcvr: f32,
    propensity: f32,
}

/// Reads the log in `dir` and joins it. `spec` (a [`super::record::spec_tag`]) keeps
/// only rows of that feature spec (0: any); `label_wait_ms` leaves out bids that recent
/// to the log's last event.
pub fn join<P: AsRef<Path>>(dirs: &[P], spec: u64, label_wait_ms: i64) -> anyhow::Result<(Vec<Row>, JoinStats)> {
    let mut stats = JoinStats::default();
    let mut bids: HashMap<u64, Bid> = HashMap::new();
    let mut outcomes: HashMap<u64, Outcome> = HashMap::new();
    let mut seen: std::collections::HashSet<(NoticeKind, u64)> = std::collections::HashSet::new();
    let mut last_ms = i64::MIN;
    let records =
        dirs.iter().map(|d| Ok((d.as_ref(), Reader::open(d.as_ref())?))).collect::<anyhow::Result<Vec<_>>>()?;
    for (dir, record) in records.into_iter().flat_map(|(dir, reader)| reader.map(move |r| (dir, r))) {
        let record = record?;
        stats.records += 1;
        let event = Event::decode(&record.data).map_err(|e| {
            anyhow::anyhow!("{}: segment {} byte {}: {e}", dir.display(), record.segment, record.offset)
        })?;
        match event {
            Event::Bid(b) => {
                last_ms = last_ms.max(b.ts_ms);
                if spec != 0 && b.spec != spec {
                    stats.other_spec += 1;
                    continue;
                }
                if bids.contains_key(&b.bid) {
                    stats.duplicate_bids += 1;
                    continue;
                }
                stats.bids += 1;
                bids.insert(
                    b.bid,
                    Bid {
                        ts_ms: b.ts_ms,
                        campaign: b.campaign.to_string(),
                        creative: b.creative.to_string(),
                        cat: b.cat.into_owned(),
                        num: b.num.into_owned(),
                        pctr: b.pctr,
                        pcvr: b.pcvr,
                        propensity: b.propensity,
                    },
                );
            }
            // A shadow's predictions are not training rows.
            Event::Shadow(_) | Event::Counted(_) => {}
            Event::Notice(n) => {
                last_ms = last_ms.max(n.ts_ms);
                if !seen.insert((n.kind, n.bid)) {
                    stats.duplicate_notices += 1;
                    continue;
                }
                let o = outcomes.entry(n.bid).or_default();
                match n.kind {
                    NoticeKind::Win => {
                        stats.wins += 1;
                        o.won = true;
                    }
                    NoticeKind::Bill => {
                        stats.bills += 1;
                        o.billed = Some(n.price);
                    }
                    NoticeKind::Loss => stats.losses += 1,
                    NoticeKind::Click => {
                        stats.clicks += 1;
                        o.clicked = true;
                    }
                    NoticeKind::Conv => {
                        stats.conversions += 1;
                        o.converted = true;
                    }
                }
            }
        }
    }
    let cutoff = last_ms.saturating_sub(label_wait_ms);
    let mut rows = Vec::new();
    for (id, o) in &outcomes {
        let Some(bid) = bids.get(id) else {
            stats.notices_without_bid += 1;
            continue;
        };
        if o.converted && !o.clicked {
            stats.conversions_without_click += 1;
        }
        let clicked = o.clicked || o.converted;
        if o.billed.is_none() && !clicked {
            stats.won_not_shown += u64::from(o.won);
            continue;
        }
        if bid.ts_ms > cutoff {
            stats.too_recent += 1;
            continue;
        }
        stats.shown_by_click_only += u64::from(o.billed.is_none());
        rows.push(Row {
            bid: *id,
            ts_ms: bid.ts_ms,
            campaign: bid.campaign.clone(),
            creative: bid.creative.clone(),
            cat: bid.cat.clone(),
            num: bid.num.clone(),
            click: clicked,
            conv: o.converted,
            pctr: bid.pctr,
            pcvr: bid.pcvr,
            propensity: bid.propensity,
            price: o.billed.unwrap_or(f64::NAN),
        });
    }
    rows.sort_by_key(|r| (r.ts_ms, r.bid));
    stats.rows = rows.len() as u64;
    stats.clicked_rows = rows.iter().filter(|r| r.click).count() as u64;
    stats.converted_rows = rows.iter().filter(|r| r.conv).count() as u64;
    Ok((rows, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::{EventLog, EventLogConfig};
    use crate::events::{BidRecord, NoticeRecord};
    use std::borrow::Cow;

    fn bid(id: u64, ts_ms: i64, spec: u64) -> Vec<u8> {
        Event::Bid(BidRecord {
            ts_ms,
            bid: id,
            request_id: "r",
            imp_id: "1",
            campaign: "c",
            creative: "cr",
            user: "",
            publisher: "",
            model: "m",
            spec,
            pctr: 0.01 * id as f32,
            pcvr: f32::NAN,
            price: 1.0,
            currency: "USD",
            value_usd: 1.0,
            floor_usd: 0.1,
            auction: 2,
            propensity: 1.0,
            cat: Cow::Owned(vec![id as i64, 7]),
            num: Cow::Owned(vec![0.5]),
            agg_applied: 0,
        })
        .to_bytes()
    }

    fn notice(kind: NoticeKind, id: u64, ts_ms: i64) -> Vec<u8> {
        Event::Notice(NoticeRecord {
            kind,
            ts_ms,
            bid: id,
            campaign: "c",
            creative: "cr",
            imp_id: "1",
            currency: "USD",
            auction_id: "",
            price: if matches!(kind, NoticeKind::Bill | NoticeKind::Win) { 0.8 } else { f64::NAN },
            usd: 0.0,
            test: false,
            loss_reason: -1,
            min_to_win: f64::NAN,
            click_ms: 0,
            agg: None,
        })
        .to_bytes()
    }

    #[test]
    fn a_log_with_every_awkward_case_joins_into_the_right_rows() {
        use NoticeKind::*;
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(EventLogConfig::new(dir.path())).unwrap();
        let records = [
            bid(1, 1_000, 9),  // billed, clicked, converted
            bid(2, 2_000, 9),  // billed, not clicked
            bid(3, 3_000, 9),  // clicked, no billing notice: shown all the same
            bid(4, 4_000, 9),  // won, never billed or clicked: not shown
            bid(5, 5_000, 9),  // lost
            bid(6, 6_000, 7),  // another spec
            bid(2, 2_000, 9),  // a repeated record
            bid(8, 99_000, 9), // billed, but too recent for its label
            notice(Win, 1, 1_100),
            notice(Bill, 1, 1_200),
            notice(Bill, 1, 1_300), // a retried billing notice
            notice(Click, 1, 20_000),
            notice(Conv, 1, 60_000),
            notice(Win, 2, 2_100),
            notice(Bill, 2, 2_200),
            notice(Click, 3, 30_000),
            notice(Win, 4, 4_100),
            notice(Loss, 5, 5_100),
            notice(Click, 77, 7_000), // a bid that was sampled out
            notice(Bill, 8, 99_500),
        ];
        for r in records {
            log.append_durable_blocking(r).unwrap();
        }
        log.close().unwrap();
        let (rows, stats) = join(&[dir.path()], 9, 10_000).unwrap();
        let got: Vec<(u64, bool, bool)> = rows.iter().map(|r| (r.bid, r.click, r.conv)).collect();
        assert_eq!(got, [(1, true, true), (2, false, false), (3, true, false)]);
        assert_eq!(rows[0].cat, [1, 7]);
        assert_eq!((rows[0].price, rows[2].price.is_nan()), (0.8, true));
        let want = JoinStats {
            records: 20,
            bids: 6,
            duplicate_bids: 1,
            other_spec: 1,
            wins: 3,
            bills: 3,
            losses: 1,
            clicks: 3,
            conversions: 1,
            duplicate_notices: 1,
            notices_without_bid: 1,
            shown_by_click_only: 1,
            won_not_shown: 1,
            conversions_without_click: 0,
            too_recent: 1,
            rows: 3,
            clicked_rows: 2,
            converted_rows: 1,
        };
        assert_eq!(stats, want);
    }
}
