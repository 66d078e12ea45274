//! Carrying out a due event: a notice call, a user's click, a conversion postback; each
//! leaves one ledger line.
//!
//! - **Notices** are GETs of the bid's `nurl` / `burl` / `lurl`, macros filled in when
//!   the auction was decided. A billing notice answered 503 (the bidder could not make
//!   the record durable yet) is retried up to [`BILL_RETRIES`] times, waiting
//!   [`BILL_BACKOFF`] × 2^k of wall time; the line keeps the last status and the number
//!   of calls. Other notices are called once.
//! - **Clicks** GET the click URL found in the markup (a line with an error when there
//!   was none). A 302 whose `Location` carries `ctrbid_click=<id>` schedules the drawn
//!   conversion, if any, at the click's time plus its delay.
//! - **Conversions** POST `{bidder}/conv?click=<id>&v=<goal CPA>` (`v` left out for a
//!   CPC campaign).
//!
//! Every call carries the event's simulated time; retries keep it.
//!
//! A bidder given as several instances (a fleet behind a load balancer) gets each call
//! at an instance drawn per call ([`Ctx::route`]), whichever signed the URL; with
//! `--replay-bills`, a share of the billing notices it applied go again to the next
//! instance, and the answer is recorded as a `replay` line.

use super::client::{Answer, CallError};
use super::draws::{self, Purpose};
use super::engine::Ctx;
use super::ledger::{self, status_of, BidRef, NoticeKind, Record};
use super::queue::{Due, Event};
use crate::notice::click::CLICK_PARAM;
use bytes::Bytes;
use http::Method;
use std::time::Duration;

/// Billing retries after a 503, and the first wait.
pub const BILL_RETRIES: u32 = 3;
pub const BILL_BACKOFF: Duration = Duration::from_millis(50);
/// Wall time a notice, click or conversion call may take.
pub const CALL_LIMIT: Duration = Duration::from_secs(5);

/// Carries out `due` and writes its ledger line.
pub async fn perform(ctx: &Ctx, due: Due) -> std::io::Result<()> {
    let at = due.at_ms;
    match due.event {
        Event::Notice { kind, bid, url, price, loss } => {
            let to = ctx.route(bid.bidder, bid.seq, imp_index(&bid), kind as u64);
            let url = url.map(|u| ctx.at_instance(bid.bidder, to, &u));
            let (status, attempts, error) = match &url {
                Some(url) => notice(ctx, kind, url, at).await,
                None => (None, 0, Some(format!("the bid has no {} URL", notice_field(kind)))),
            };
            let billed = kind == NoticeKind::Bill && status == Some(200);
            let notice = ledger::Notice { kind, bid, ts_ms: at, price, loss, status, attempts, error };
            ctx.ledger.write(&Record::Notice(notice.clone()))?;
            match url {
                Some(url) if billed && replays(ctx, &notice.bid) => replay(ctx, notice.bid, &url, to, at).await,
                _ => Ok(()),
            }
        }
        Event::Click { bid, url, bidder_base, conversion } => {
            let Some(url) = url else {
                let error = Some("no click URL in the markup".to_string());
                return ctx.ledger.write(&Record::Click(ledger::Click {
                    bid,
                    ts_ms: at,
                    status: None,
                    click_id: None,
                    error,
                }));
            };
            let to = ctx.route(bid.bidder, bid.seq, imp_index(&bid), CLICK_CALL);
            let url = ctx.at_instance(bid.bidder, to, &url);
            let r = ctx.client.call(Method::GET, &url, Some(at), Bytes::new(), CALL_LIMIT).await;
            let (status, error) = status_of(&r, |a| a.status);
            let click_id = r.ok().filter(|a| a.status == 302).and_then(|a| click_id(a.location.as_deref()?));
            if let (Some(id), Some((delay_ms, value))) = (&click_id, conversion) {
                let event = Event::Conversion { bid: bid.clone(), bidder_base, click_id: id.clone(), value };
                ctx.queue.push(at + delay_ms, event);
            }
            ctx.ledger.write(&Record::Click(ledger::Click { bid, ts_ms: at, status, click_id, error }))
        }
        Event::Conversion { bid, bidder_base, click_id, value } => {
            let to = ctx.route(bid.bidder, bid.seq, imp_index(&bid), CONVERSION_CALL);
            let base =
                if ctx.instances[bid.bidder].len() > 1 { ctx.instances[bid.bidder][to].clone() } else { bidder_base };
            let (status, error) = conversion(ctx, &base, &click_id, value, at).await;
            ctx.ledger.write(&Record::Conversion(ledger::Conversion { bid, ts_ms: at, value, status, error }))
        }
    }
}

/// Route draws of the calls that are not notices (notices use their kind's number).
const CLICK_CALL: u64 = 8;
const CONVERSION_CALL: u64 = 9;

/// The imp's index in its request (`imp_id` "1", "2", ...), for keying draws.
fn imp_index(bid: &BidRef) -> u64 {
    bid.imp_id.parse::<u64>().map_or(0, |i| i.saturating_sub(1))
}

/// Whether this applied bill is replayed (`--replay-bills`): a seeded draw per bid.
fn replays(ctx: &Ctx, bid: &BidRef) -> bool {
    let share = ctx.settings.replay_bills;
    share > 0.0
        && ctx.instances[bid.bidder].len() > 1
        && draws::unit(ctx.settings.seed, bid.seq, imp_index(bid), Purpose::Replay) < share
}

/// Sends an applied bill again, to the instance after `first`, and records the answer:
/// "ok" means the fleet charged it twice.
async fn replay(ctx: &Ctx, bid: BidRef, url: &str, first: usize, at: i64) -> std::io::Result<()> {
    let to = (first + 1) % ctx.instances[bid.bidder].len();
    let url = ctx.at_instance(bid.bidder, to, url);
    let r = ctx.client.call(Method::GET, &url, Some(at), Bytes::new(), CALL_LIMIT).await;
    let (status, error) = status_of(&r, |a| a.status);
    let applied = r.as_ref().is_ok_and(|a| a.status == 200 && a.body.as_ref() == b"ok\n");
    ctx.ledger.write(&Record::Replay(ledger::Replay { bid, ts_ms: at, instance: to, status, applied, error }))
}

fn notice_field(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Win => "nurl",
        NoticeKind::Bill => "burl",
        NoticeKind::Loss => "lurl",
    }
}

/// Calls a notice URL (billing: retried on 503): final status, calls made, error.
async fn notice(ctx: &Ctx, kind: NoticeKind, url: &str, at: i64) -> (Option<u16>, u32, Option<String>) {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let r: Result<Answer, CallError> = ctx.client.call(Method::GET, url, Some(at), Bytes::new(), CALL_LIMIT).await;
        let (status, error) = status_of(&r, |a| a.status);
        if kind == NoticeKind::Bill && status == Some(503) && attempts <= BILL_RETRIES {
            tokio::time::sleep(BILL_BACKOFF * 2u32.pow(attempts - 1)).await;
            continue;
        }
        return (status, attempts, error);
    }
}

async fn conversion(
    ctx: &Ctx,
    base: &str,
    click_id: &str,
    value: Option<f64>,
    at: i64,
) -> (Option<u16>, Option<String>) {
    let mut url = format!("{}/conv?click={click_id}", base.trim_end_matches('/'));
    if let Some(v) = value {
        url.push_str(&format!("&v={v}"));
    }
    let r = ctx.client.call(Method::POST, &url, Some(at), Bytes::new(), CALL_LIMIT).await;
    status_of(&r, |a| a.status)
}

/// The click id in a redirect's Location (`...?ctrbid_click=<id>[&...][#...]`).
pub fn click_id(location: &str) -> Option<String> {
    let key = format!("{CLICK_PARAM}=");
    let at = location.find(&key)? + key.len();
    let rest = &location[at..];
    let id = &rest[..rest.find(['&', '#']).unwrap_or(rest.len())];
    (!id.is_empty()).then(|| id.to_string())
}

/// What a bid's events say about it.
pub fn bid_ref(bidder: usize, bid_id: &str, seq: u64, imp_id: &str, cid: Option<&str>) -> BidRef {
    BidRef { bidder, bid_id: bid_id.to_string(), seq, imp_id: imp_id.to_string(), cid: cid.map(str::to_owned) }
}

#[cfg(test)]
mod tests {
    use super::click_id;

    #[test]
    fn reads_the_click_id_from_the_location() {
        assert_eq!(click_id("https://a.example/?ctrbid_click=ab.12.cd").as_deref(), Some("ab.12.cd"));
        assert_eq!(click_id("https://a.example/p?q=1&ctrbid_click=X&r=2").as_deref(), Some("X"));
        assert_eq!(click_id("https://a.example/p?ctrbid_click=X#top").as_deref(), Some("X"));
        assert_eq!(click_id("https://a.example/p?ctrbid_click="), None);
        assert_eq!(click_id("https://a.example/"), None);
    }
}
