//! What follows a win, all on simulated time from the auction `t`: the `nurl` at
//! `t + 50 ms` with the clearing price; the impression renders with probability
//! `--render-rate` (an `impression` line with the true pCTR and pCVR of the creative
//! shown) and its `burl` is called at `t + 1 s`; the user clicks with the true pCTR
//! (× `--click-boost`, at most 1) after an exponential delay of mean `--click-delay-s`
//! from the render, following the click URL found in the markup; a click converts with
//! the true pCVR after a log-normal delay (mean `--conv-delay-s`, log-sd
//! [`CONV_DELAY_SIGMA`]), posted with the campaign's goal CPA as its value. Every draw
//! comes from the imp's own streams ([`super::draws`]).

use super::dispatch::bid_ref;
use super::draws::{self, Purpose};
use super::engine::Ctx;
use super::ledger::{self, NoticeKind};
use super::queue::Event;
use super::response::{self, ReceivedBid};
use super::round::Sent;
use crate::simulate::market::OfferImp;

/// Simulated delays of the notices after the auction, and of the render.
pub const NOTICE_DELAY_MS: i64 = 50;
pub const RENDER_DELAY_MS: i64 = 1000;
/// Log-sd of the conversion delay.
pub const CONV_DELAY_SIGMA: f64 = 1.0;

/// The catalog's campaign of a bid's creative.
pub fn campaign_of(ctx: &Ctx, bid: &ReceivedBid) -> Option<String> {
    let cr = ctx.oracle.creative(bid.crid.as_deref()?)?;
    Some(ctx.oracle.catalog().creatives[cr as usize].campaign_id.clone())
}

/// Queues the winner's win notice, and its billing, click and conversion as drawn;
/// the rendered impression's ledger line, if it renders.
pub fn won(
    ctx: &Ctx,
    sent: &Sent,
    k: usize,
    imp: &OfferImp,
    b: usize,
    bid: &ReceivedBid,
    price: f64,
) -> Option<ledger::Impression> {
    let s = &ctx.settings;
    let (seq, kk) = (sent.seq, k as u64);
    let cid = campaign_of(ctx, bid);
    let who = bid_ref(b, &bid.id, seq, &(k + 1).to_string(), cid.as_deref());
    let filled = |u: &Option<String>| u.as_deref().map(|u| fill(u, &sent.id, bid, Some(price), None));
    let event = Event::Notice {
        kind: NoticeKind::Win,
        bid: who.clone(),
        url: filled(&bid.nurl),
        price: Some(price),
        loss: None,
    };
    ctx.queue.push(sent.ts_ms + NOTICE_DELAY_MS, event);
    if draws::unit(s.seed, seq, kk, Purpose::Render) >= s.render_rate {
        return None;
    }
    let render_ms = sent.ts_ms + RENDER_DELAY_MS;
    let crid = bid.crid.clone().unwrap_or_default();
    let creative = ctx.oracle.creative(&crid).expect("a winner's creative is in the catalog");
    let rates = ctx.oracle.rates(&imp.scene, creative);
    let pctr_used = (rates.pctr * s.click_boost).min(1.0);
    let impression = ledger::Impression {
        bid: who.clone(),
        crid,
        ts_ms: render_ms,
        price,
        pctr: rates.pctr,
        pcvr: rates.pcvr,
        pctr_used,
    };
    let event = Event::Notice {
        kind: NoticeKind::Bill,
        bid: who.clone(),
        url: filled(&bid.burl),
        price: Some(price),
        loss: None,
    };
    ctx.queue.push(render_ms, event);
    if draws::unit(s.seed, seq, kk, Purpose::Click) >= pctr_used {
        return Some(impression);
    }
    let click_delay = draws::exponential(draws::unit(s.seed, seq, kk, Purpose::ClickDelay), s.click_delay_s * 1e3);
    let conversion = (draws::unit(s.seed, seq, kk, Purpose::Conversion) < rates.pcvr).then(|| {
        let z = draws::normal(s.seed, seq, kk, Purpose::ConversionDelay);
        let delay = draws::lognormal(z, s.conv_delay_s * 1e3, CONV_DELAY_SIGMA).round() as i64;
        let campaign = &ctx.oracle.catalog().campaigns;
        let goal_cpa = cid.as_deref().and_then(|c| campaign.iter().find(|x| x.id == c)).map(|c| c.goal_cpa);
        (delay.max(1), goal_cpa.filter(|&v| v > 0.0))
    });
    let base = &ctx.bidders[b];
    let url = bid.adm.as_deref().and_then(|adm| {
        response::click_url(adm, base)
            .or_else(|| response::click_url(adm, response::origin(bid.nurl.as_deref()?)?))
            .map(str::to_owned)
    });
    let at = render_ms + (click_delay.round() as i64).max(1);
    ctx.queue.push(at, Event::Click { bid: who, url, bidder_base: base.clone(), conversion });
    Some(impression)
}

/// A notice URL with the OpenRTB macros filled in: `${AUCTION_ID}` (the request id),
/// `${AUCTION_BID_ID}`, `${AUCTION_IMP_ID}`, `${AUCTION_CURRENCY}` (USD),
/// `${AUCTION_PRICE}` (the clearing price, win and billing), `${AUCTION_LOSS}` and
/// `${AUCTION_MIN_TO_WIN}` (loss).
pub fn fill(url: &str, request_id: &str, bid: &ReceivedBid, price: Option<f64>, lost: Option<(u16, f64)>) -> String {
    let mut u = url
        .replace("${AUCTION_ID}", request_id)
        .replace("${AUCTION_BID_ID}", &bid.id)
        .replace("${AUCTION_IMP_ID}", &bid.impid)
        .replace("${AUCTION_CURRENCY}", "USD");
    if let Some(p) = price {
        u = u.replace("${AUCTION_PRICE}", &p.to_string());
    }
    if let Some((reason, min_to_win)) = lost {
        u = u.replace("${AUCTION_LOSS}", &reason.to_string()).replace("${AUCTION_MIN_TO_WIN}", &min_to_win.to_string());
    }
    u
}
