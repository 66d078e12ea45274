//! `ctrbid exchange`: the simulator played as a live ad exchange against running ctrbid
//! bidders over real HTTP, for a simulated period at a chosen wall-clock rate, judged by
//! its own ground-truth ledger.
//!
//! ```text
//! ctrbid serve --config bidder.toml          # with [server] clock = "simulation"
//! ctrbid exchange --bidder http://127.0.0.1:8080 --seed 7 --requests 20000 --days 1 \
//!     --rate 1000 --out /tmp/x
//! .venv/bin/python loadtest/exchange_plots.py /tmp/x   # spend.png, win_rate.png
//! ```
//!
//! **What it does.** The world, catalog and hidden truth are `ctrbid simulate`'s for the
//! same `--seed`, `--campaigns`, `--creatives`, `--publishers`, `--users` and
//! `--start-ts` (`--seed 7` with the default sizes is the world of the default catalog,
//! `models/default/catalog.json`; clicks are followed only where the bidder's markup
//! carries its click URL, i.e. its catalog's markup has `${CTRBID_CLICK_URL}`, as
//! `ctrbid simulate` writes it). `--requests` N requests are spread over `--days`
//! simulated days by the simulator's diurnal clock (request i at progress i/N, to the
//! millisecond) and sent at `--rate` requests per second of wall time, open loop (request
//! i is due at start + i/rate whatever came before; how late the exchange itself sends
//! each is recorded). Each bidder gets every request, and every request and notice
//! carries its simulated time in `x-ctrbid-time`, so a bidder must run with
//! `server.clock = "simulation"` (checked at start: a bidder that does not answer, or
//! answers a request without the header as a system-clock bidder does, is named in the
//! error). A simulated day takes N / rate seconds plus the final drain of clicks and
//! conversions.
//!
//! **The auction**, per imp ([`auction`]): the bidders' bids (answers after the request's
//! `tmax` ms of wall time, plus `--tmax-grace-ms`, are late and lose), against the
//! **competing demand** ([`landscape`]): one draw per imp, `floor_ref × M × exp(μ_pub +
//! μ_fmt + σ·z)`, `floor_ref` the imp's floor (0.5 USD CPM without one), M
//! `--landscape-median` (default 120: the default bidder bids the best of ~50 candidates, a
//! median of 32.6 USD CPM, about 60× the floor), σ `--landscape-sigma` (default 0.8), μ_pub
//! one normal draw (sd 0.3) per publisher, μ_fmt 0 / 0.2 / 0.1 for banner / video / native;
//! `--no-competition` turns it off. Bids under the floor lose with loss reason 100, a
//! `crid` not in the catalog with 202 (Creative Filtered – Disapproved by Exchange), late
//! bids with 2, outbid ones with 102. Ties are broken by a seeded draw. Second price
//! (`"at":2`, the simulator's): the winner pays max(the highest other valid price, floor) +
//! 0.01, never above its bid; first price (`"at":1`, for the share `--first-price-share` of
//! publishers chosen by a seeded hash): its bid.
//!
//! **Measured** (2026-12-04, the 2-core development box, bidder and exchange on it
//! together): the default bidder (`deploy/ctrbid.toml` with `clock = "simulation"` and a
//! fixed `notices.hmac_key`, the default model, the seed-7 catalog as `ctrbid simulate`
//! writes it) against `--seed 7 --requests 20000 --days 1 --rate 1000` with the default
//! landscape bid on 24,850 imps and won 6,384: a **win rate of 25.7 %** (hourly 22–29 %),
//! 6,074 impressions, spend 109.76 USD (eCPM 18.07; the bidder's
//! `ctrbid_billed_usd_total` 109.761075, the same to the micro-dollar), 150 clicks
//! against 144.9 expected, 6 conversions against 6.4, value at the goals 298.2 USD;
//! every notice accepted. The run took 20.0 s of wall time (1,000 requests/s, the
//! exchange's own schedule late by p50 1.0 ms, p99 3.3 ms) and about a fifth of one core.
//! With `--no-competition` the same bidder's bids have a median of 32.6 USD CPM
//! (10th–90th percentile 18.7–39.8): the best of its candidates, often at their
//! `max_cpm`.
//! At `--requests 100000 --rate 5000` the same box's two cores saturate: the bidder
//! answers 3,730 bids late and drops requests for time, and the exchange's own schedule
//! is late by p99 268 ms; keep the rate where the schedule's p99 stays in milliseconds.
//!
//! **Notices and users** ([`win`], [`dispatch`]), on simulated time: the winner's `nurl`
//! at auction + 50 ms with `${AUCTION_PRICE}` the clearing price; the impression renders
//! with probability `--render-rate` (0.95) and its `burl` is called at + 1 s (a 503 is
//! retried up to 3 times); every losing bid's `lurl` at + 50 ms with `${AUCTION_LOSS}`
//! its loss reason and `${AUCTION_MIN_TO_WIN}` the highest price among the other
//! entrants + 0.01, at least the floor (under first price: the clearing price + 0.01;
//! under second price the winner's bid + 0.01, what the loser needed to bid, rather than
//! the clearing price + 0.01). A rendered impression is clicked with the simulator's true
//! pCTR of the creative shown on that imp (× `--click-boost`, tests only, at most 1)
//! after an exponential delay (mean `--click-delay-s`, 30 s), by following the click URL
//! in the markup; a click converts with the true pCVR after a log-normal delay (mean
//! `--conv-delay-s`, 2 h, log-sd 1), posted to `{bidder}/conv?click=<id>&v=<goal CPA>`
//! (no `v` for CPC campaigns). Pending events wait in a queue keyed by simulated time
//! ([`queue`], [`engine`]). Every draw comes from a ChaCha stream keyed by (seed,
//! request, imp, purpose) ([`draws`]): a rerun at another rate gives the same auctions
//! except where lateness differs.
//!
//! **Files** in `--out`:
//! - `ledger.jsonl` ([`ledger`]): append-only lines, as things happen: `run` (the
//!   options), `request` (per request: each bidder's status, latency, lateness, bids),
//!   `auction` (per imp: floor, `at`, format, each bid's outcome `no_bid` / `bid` /
//!   `late` / `invalid` / `error` with price, crid, cid, bid id, loss reason and minimum
//!   to win, the competing bid, the winner, the clearing price), `notice` (`win` /
//!   `bill` / `loss`: bid id, time, price or loss reason, final status, attempts),
//!   `impression` (each render, with the true pCTR and pCVR and the pCTR drawn with),
//!   `click` (status, click id), `conversion` (value, status);
//! - `report.json` and `report.md` ([`report`], [`markdown`]): per bidder and per
//!   campaign bids, wins, win rate, spend, impressions, clicks, conversions, eCPM, eCPC
//!   and eCPA against the goals, the true expected clicks and conversions, the value
//!   bought at the campaign's goal and the surplus (value − spend); totals; calls by
//!   status; per simulated hour requests, bids, wins, win rate, spend, clicks. Spend
//!   counts each billed impression's clearing price / 1000 rounded to the micro-dollar,
//!   as the bidder rounds it, so the two books agree exactly;
//! - `timeseries.json`: the hourly rows, for `loadtest/exchange_plots.py`.
//!
//! A summary line goes to stderr: wall time, requests/s, the schedule's lateness (p99),
//! bids, wins, spend, clicks, conversions, and calls by kind and status.

pub mod auction;
pub mod client;
pub mod dispatch;
pub mod draws;
pub mod engine;
pub mod landscape;
pub mod ledger;
pub mod markdown;
pub mod queue;
pub mod report;
pub mod response;
pub mod round;
pub mod win;

#[cfg(test)]
mod tests;

mod opts;

pub use opts::{exchange, run, Options, Opts, Played};
