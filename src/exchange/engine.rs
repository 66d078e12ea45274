//! The run: requests on an open-loop schedule, each one's auctions, and the events
//! they schedule, dispatched in simulated-time order.
//!
//! Request `i` is due at `start + i / rate` of wall time whatever came before (open
//! loop); how late the exchange itself sends it is recorded. Before sending a request
//! (simulated time `t`) every pending event due at or before `t` is dispatched
//! (concurrently, at most `--max-connections` at once); after the last request, once
//! every auction is decided, the rest are dispatched in time order as fast as the
//! bidders answer (their time is in the header). Events scheduled by an answer that
//! arrives after later requests were sent (a notice at `t + 50 ms` when the next request
//! is due sooner) go out before the next request after that: in simulated time they are
//! at most one answer's wall latency out of order, and each carries its own time.
//!
//! Each request's auctions: [`super::round`]; what follows a win: [`super::win`].

use super::client::Client;
use super::dispatch;
use super::landscape::Landscape;
use super::ledger;
use super::queue::Queue;
use super::round::{self, Sent};
use crate::simulate::market::{Market, Oracle};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What the draws and timings of a run depend on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    pub render_rate: f64,
    pub click_delay_s: f64,
    pub conv_delay_s: f64,
    pub click_boost: f64,
    pub tmax_grace_ms: u64,
    pub first_price_share: f64,
    /// Share of applied billing notices sent again to another instance (`--replay-bills`).
    pub replay_bills: f64,
}

/// Everything the tasks of a run share.
pub struct Ctx {
    pub client: Client,
    pub ledger: ledger::Writer,
    pub queue: Queue,
    pub oracle: Arc<Oracle>,
    pub landscape: Landscape,
    /// Base URLs without a trailing `/`: each bidder's first instance.
    pub bidders: Vec<String>,
    /// Every bidder's instances behind its load balancer (one for most).
    pub instances: Vec<Vec<String>>,
    pub settings: Settings,
}

impl Ctx {
    /// The instance of bidder `b` the load balancer sends request `seq` to: round robin.
    pub fn instance(&self, b: usize, seq: u64) -> &str {
        let list = &self.instances[b];
        &list[(seq % list.len() as u64) as usize]
    }

    /// Which of bidder `b`'s instances a call about imp `imp` of request `seq` reaches,
    /// `call` telling the calls of one bid apart: a seeded draw, as a load balancer that
    /// knows nothing of who signed the URL.
    pub fn route(&self, b: usize, seq: u64, imp: u64, call: u64) -> usize {
        let n = self.instances[b].len();
        if n == 1 {
            return 0;
        }
        let u = super::draws::unit(self.settings.seed, seq, imp * 16 + call, super::draws::Purpose::Route);
        ((u * n as f64) as usize).min(n - 1)
    }

    /// `url`, signed by whichever instance bid, sent to instance `to` of bidder `b`: the
    /// same path and query at its address.
    pub fn at_instance(&self, b: usize, to: usize, url: &str) -> String {
        let list = &self.instances[b];
        if list.len() == 1 {
            return url.to_string();
        }
        rebase(url, &list[to])
    }
}

/// `url`'s path and query under `base` (`http://host:port`), as a load balancer in
/// front of `base`'s fleet would deliver it.
pub fn rebase(url: &str, base: &str) -> String {
    let rest = url.strip_prefix("http://").map_or(url, |r| r.find('/').map_or("", |i| &r[i..]));
    format!("{base}{rest}")
}

/// How late the exchange sent each request, and the run's wall time.
#[derive(Debug, Clone, Default)]
pub struct Timing {
    /// From the first request's due time to the end of the drain.
    pub wall: Duration,
    /// From the first request's due time to the last one's sending.
    pub sending: Duration,
    /// Per request, µs after its due time.
    pub lags_us: Vec<u64>,
}

/// Plays `requests` requests at `rate` per second against the bidders.
pub async fn play(
    ctx: Arc<Ctx>,
    market: &mut Market,
    requests: u64,
    rate: f64,
    max_events: usize,
) -> anyhow::Result<Timing> {
    let permits = Arc::new(Semaphore::new(max_events.max(1)));
    let (mut auctions, mut events) = (JoinSet::new(), JoinSet::new());
    let mut lags_us = Vec::with_capacity(requests as usize);
    let share = ctx.oracle.clone();
    let start = tokio::time::Instant::now();
    for seq in 0..requests {
        let due = start + Duration::from_secs_f64(seq as f64 / rate);
        tokio::time::sleep_until(due).await;
        let offer = market.next(seq, |p| first_price(&ctx, &share, p));
        let sent = Sent {
            seq,
            id: offer.id.to_string(),
            ts_ms: offer.ts_ms,
            publisher: offer.publisher,
            user: offer.user,
            tmax_ms: offer.tmax_ms,
            first_price: offer.first_price,
            imps: offer.imps,
            json: Bytes::copy_from_slice(offer.json),
        };
        while let Some(d) = ctx.queue.pop_due(sent.ts_ms) {
            let permit = Arc::clone(&permits).acquire_owned().await?;
            let ctx = Arc::clone(&ctx);
            events.spawn(async move {
                let _permit = permit;
                dispatch::perform(&ctx, d).await
            });
        }
        lags_us.push(tokio::time::Instant::now().saturating_duration_since(due).as_micros() as u64);
        auctions.spawn(round::auction(Arc::clone(&ctx), sent));
        while let Some(done) = auctions.try_join_next() {
            done??;
        }
        while let Some(done) = events.try_join_next() {
            done??;
        }
    }
    let sending = start.elapsed();
    while let Some(done) = auctions.join_next().await {
        done??;
    }
    loop {
        while let Some(d) = ctx.queue.pop() {
            let permit = Arc::clone(&permits).acquire_owned().await?;
            let ctx = Arc::clone(&ctx);
            events.spawn(async move {
                let _permit = permit;
                dispatch::perform(&ctx, d).await
            });
        }
        // An event that ends may have queued a conversion: pop again before waiting.
        match events.join_next().await {
            Some(done) => done??,
            None => break,
        }
    }
    Ok(Timing { wall: start.elapsed(), sending, lags_us })
}

fn first_price(ctx: &Ctx, oracle: &Oracle, publisher: u32) -> bool {
    super::landscape::first_price(ctx.settings.seed, ctx.settings.first_price_share, oracle.publisher_id(publisher))
}

#[cfg(test)]
mod tests {
    use super::rebase;

    #[test]
    fn a_url_moves_to_another_instance_with_its_path_and_query() {
        let url = "http://127.0.0.1:4001/bill?b=1f&p=1.5&s=ab";
        assert_eq!(rebase(url, "http://127.0.0.1:4002"), "http://127.0.0.1:4002/bill?b=1f&p=1.5&s=ab");
        assert_eq!(rebase("http://h:1", "http://g:2"), "http://g:2");
    }
}
