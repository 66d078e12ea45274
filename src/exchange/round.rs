//! One request's round: the JSON goes to every bidder at once; each answer is awaited
//! up to `tmax + tmax_grace_ms + 1 s` of wall time and is **late** after `tmax +
//! tmax_grace_ms` (its bids lose with 2); then each imp is auctioned
//! ([`super::auction`]) with the competing demand's draw, a `request` line and one
//! `auction` line per imp go to the ledger, every losing bid's `lurl` is queued at
//! `t + 50 ms`, and the winner's notices and user go to [`super::win`].
//!
//! A bid's `impid` picks its imp; a bid for an imp the request does not have is
//! recorded, and refused with 3, in the first imp's auction. Bids of an answer in
//! another currency than USD are refused with 3.

use super::auction::{self, loss, Contender, Fate, Terms, Winner};
use super::client::{Answer, CallError};
use super::dispatch::bid_ref;
use super::draws::{self, Purpose};
use super::engine::Ctx;
use super::ledger::{self, AnswerLine, Entry, NoticeKind, Outcome, Record, WinnerLine};
use super::queue::Event;
use super::response::{self, ReceivedBid};
use super::win::{campaign_of, fill, won, NOTICE_DELAY_MS};
use crate::simulate::market::OfferImp;
use bytes::Bytes;
use http::Method;
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long past `tmax` (+ grace) a late answer is still awaited, to be recorded.
pub const LATE_WAIT: Duration = Duration::from_secs(1);

/// One request as its round needs it.
pub struct Sent {
    pub seq: u64,
    pub id: String,
    pub ts_ms: i64,
    pub publisher: u32,
    pub user: u32,
    pub tmax_ms: u16,
    pub first_price: bool,
    pub imps: Vec<OfferImp>,
    pub json: Bytes,
}

/// One bidder's answer to a request, read.
struct Read {
    line: AnswerLine,
    bids: Vec<ReceivedBid>,
    usd: bool,
    /// The outcome of imps it made no (usable) bid on.
    empty: Outcome,
}

async fn ask(ctx: Arc<Ctx>, bidder: usize, sent: Arc<Sent>) -> Read {
    let late_after = Duration::from_millis(u64::from(sent.tmax_ms) + ctx.settings.tmax_grace_ms);
    let url = format!("{}/openrtb2/bid", ctx.instance(bidder, sent.seq));
    let t0 = Instant::now();
    let r = ctx.client.call(Method::POST, &url, Some(sent.ts_ms), sent.json.clone(), late_after + LATE_WAIT).await;
    let latency = t0.elapsed();
    let late = latency > late_after;
    let mut line = AnswerLine {
        bidder,
        status: None,
        latency_ms: latency.as_secs_f64() * 1e3,
        late,
        bids: 0,
        nbr: None,
        error: None,
    };
    let (mut bids, mut usd, mut empty) = (Vec::new(), true, if late { Outcome::Late } else { Outcome::NoBid });
    match r {
        Ok(Answer { status: 200, body, .. }) => {
            line.status = Some(200);
            match response::parse(&body, &sent.id) {
                Ok(p) => (bids, usd, line.nbr) = (p.bids, p.usd, p.nbr),
                Err(e) => (line.error, empty) = (Some(e), Outcome::Error),
            }
        }
        Ok(Answer { status: 204, .. }) => line.status = Some(204),
        Ok(Answer { status, body, .. }) => {
            line.status = Some(status);
            let text = String::from_utf8_lossy(&body);
            line.error = Some(format!("HTTP {status}: {}", text.lines().next().unwrap_or_default()));
            empty = Outcome::Error;
        }
        Err(CallError::Timeout) => {
            line.error = Some(format!("no answer within {} ms", (late_after + LATE_WAIT).as_millis()));
            (line.late, empty) = (true, Outcome::Late);
        }
        Err(e) => (line.error, empty) = (Some(e.to_string()), Outcome::Error),
    }
    line.bids = bids.len();
    Read { line, bids, usd, empty }
}

/// Sends one request to every bidder, auctions its imps and queues what follows.
pub async fn auction(ctx: Arc<Ctx>, sent: Sent) -> std::io::Result<()> {
    let sent = Arc::new(sent);
    let calls: Vec<_> =
        (0..ctx.bidders.len()).map(|b| tokio::spawn(ask(Arc::clone(&ctx), b, Arc::clone(&sent)))).collect();
    let mut reads = Vec::with_capacity(calls.len());
    for call in calls {
        reads.push(call.await.expect("a bid call does not panic"));
    }
    let at = if sent.first_price { 1 } else { 2 };
    let publisher = ctx.oracle.publisher_id(sent.publisher).to_string();
    ctx.ledger.write(&Record::Request(ledger::RequestLine {
        seq: sent.seq,
        request_id: sent.id.clone(),
        ts_ms: sent.ts_ms,
        publisher: publisher.clone(),
        user: ctx.oracle.user_id(sent.user).to_string(),
        at,
        tmax_ms: sent.tmax_ms,
        imps: sent.imps.len(),
        answers: reads.iter().map(|r| r.line.clone()).collect(),
    }))?;
    let imp_ids: Vec<String> = (1..=sent.imps.len()).map(|k| k.to_string()).collect();
    for (k, imp) in sent.imps.iter().enumerate() {
        // This imp's bids; a bid for an imp the request lacks is refused in the first's.
        let mut contenders: Vec<(usize, &ReceivedBid)> = Vec::new();
        for (b, read) in reads.iter().enumerate() {
            for bid in &read.bids {
                let unknown_imp = !imp_ids.contains(&bid.impid);
                if bid.impid == imp_ids[k] || (k == 0 && unknown_imp) {
                    contenders.push((b, bid));
                }
            }
        }
        let (record, impression) = decide(&ctx, &sent, k, imp, &imp_ids, &reads, &contenders, &publisher);
        ctx.ledger.write(&Record::Auction(record))?;
        if let Some(impression) = impression {
            ctx.ledger.write(&Record::Impression(impression))?;
        }
    }
    Ok(())
}

/// Auctions imp `k` and queues its notices and the user's actions; the ledger lines of
/// the auction and of the winner's impression, if it renders.
#[allow(clippy::too_many_arguments)]
fn decide(
    ctx: &Ctx,
    sent: &Sent,
    k: usize,
    imp: &OfferImp,
    imp_ids: &[String],
    reads: &[Read],
    contenders: &[(usize, &ReceivedBid)],
    publisher: &str,
) -> (ledger::Auction, Option<ledger::Impression>) {
    let seed = ctx.settings.seed;
    let rejected = |b: usize, bid: &ReceivedBid| -> Option<u16> {
        if reads[b].line.late {
            Some(loss::EXPIRED)
        } else if !reads[b].usd || !imp_ids.contains(&bid.impid) {
            Some(loss::INVALID_RESPONSE)
        } else if bid.crid.as_deref().is_none_or(str::is_empty) {
            Some(loss::MISSING_CREATIVE_ID)
        } else if ctx.oracle.creative(bid.crid.as_deref().unwrap_or_default()).is_none() {
            Some(loss::DISAPPROVED)
        } else {
            None
        }
    };
    let bids: Vec<Contender> =
        contenders.iter().map(|&(b, bid)| Contender { price: bid.price, rejected: rejected(b, bid) }).collect();
    let competing = ctx.landscape.competing(sent.seq, k, imp.floor, sent.publisher, imp.kind);
    let terms = Terms { floor: imp.floor, first_price: sent.first_price, competing };
    let out = auction::run(&terms, &bids, |n| draws::rng(seed, sent.seq, k as u64, Purpose::Tie).gen_range(0..n));
    let imp_id = &imp_ids[k];
    let mut entries = Vec::with_capacity(contenders.len() + reads.len());
    for (i, &(b, bid)) in contenders.iter().enumerate() {
        let (outcome, loss_reason, min_to_win) = match out.fates[i] {
            Fate::Won => (Outcome::Bid, None, None),
            Fate::Lost { reason, min_to_win } => {
                let outcome = match reason {
                    loss::LOST_TO_HIGHER => Outcome::Bid,
                    loss::EXPIRED => Outcome::Late,
                    _ => Outcome::Invalid,
                };
                (outcome, Some(reason), Some(min_to_win))
            }
        };
        let cid = campaign_of(ctx, bid);
        if let (Some(reason), Some(mtw)) = (loss_reason, min_to_win) {
            let url = bid.lurl.as_deref().map(|u| fill(u, &sent.id, bid, None, Some((reason, mtw))));
            let event = Event::Notice {
                kind: NoticeKind::Loss,
                bid: bid_ref(b, &bid.id, sent.seq, imp_id, cid.as_deref()),
                url,
                price: None,
                loss: Some(reason),
            };
            ctx.queue.push(sent.ts_ms + NOTICE_DELAY_MS, event);
        }
        entries.push(Entry {
            bidder: b,
            outcome,
            bid_id: Some(bid.id.clone()),
            price: bid.price.is_finite().then_some(bid.price),
            crid: bid.crid.clone(),
            cid: bid.cid.clone(),
            loss: loss_reason,
            min_to_win,
            error: None,
        });
    }
    for (b, read) in reads.iter().enumerate() {
        if !contenders.iter().any(|c| c.0 == b) {
            let error = read.line.error.clone();
            entries.push(Entry {
                bidder: b,
                outcome: read.empty,
                bid_id: None,
                price: None,
                crid: None,
                cid: None,
                loss: None,
                min_to_win: None,
                error,
            });
        }
    }
    let clearing = out.clearing_price;
    let (winner, impression) = match out.winner {
        Some(Winner::Bid(i)) => {
            let (b, bid) = contenders[i];
            let impression = won(ctx, sent, k, imp, b, bid, clearing.unwrap_or(bid.price));
            (Some(WinnerLine { bidder: b, bid_id: bid.id.clone() }), impression)
        }
        _ => (None, None),
    };
    let auction = ledger::Auction {
        seq: sent.seq,
        request_id: sent.id.clone(),
        imp_id: imp_id.clone(),
        ts_ms: sent.ts_ms,
        floor: imp.floor,
        at: if sent.first_price { 1 } else { 2 },
        kind: imp.kind,
        publisher: publisher.to_string(),
        entries,
        competing,
        winner,
        competing_won: out.winner == Some(Winner::Competing),
        clearing_price: clearing,
    };
    (auction, impression)
}
