//! The exchange's ledger, `OUT/ledger.jsonl`: one JSON object per line, appended as
//! things happen, each with a `"type"`. The report is computed from this file alone
//! ([`super::report`]). Prices are USD CPM, times Unix ms of simulated time (`ts_ms`),
//! `bidder` an index into the `run` line's `bidders`, `seq` the request's number from 0,
//! `imp_id` the imp's id ("1", "2", ...), `bid_id` the bidder's `bid.id` as given, `cid`
//! and `crid` the campaign and creative of the exchange's catalog.
//!
//! Line order follows the wall clock (answers and notices overlap), not simulated time;
//! every line carries its own `ts_ms`. The only fields that depend on timing rather
//! than on the seed are `latency_ms`, `late` and what lateness changes, `status` and
//! `attempts` where a bidder failed, and `error` texts.

use super::client::CallError;
use super::landscape::LandscapeParams;
use crate::simulate::market::MediaKind;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

/// One line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Run(Run),
    Request(RequestLine),
    Auction(Auction),
    Notice(Notice),
    Impression(Impression),
    Click(Click),
    Conversion(Conversion),
    Replay(Replay),
}

/// A billing notice one instance of a fleet applied, sent again to another
/// (`--replay-bills`): the fleet should refuse it (answered 200 "already applied").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replay {
    #[serde(flatten)]
    pub bid: BidRef,
    pub ts_ms: i64,
    /// The instance it was sent to, an index into the bidder's comma-separated list.
    pub instance: usize,
    pub status: Option<u16>,
    /// Whether the instance applied it again (answered 200 "ok"): a double charge.
    pub applied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The first line: what the run was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub version: u32,
    /// Base URLs, as `--bidder` gave them.
    pub bidders: Vec<String>,
    pub seed: u64,
    pub requests: u64,
    pub days: u32,
    /// Unix seconds.
    pub start_ts: i64,
    /// Requests per second of wall time.
    pub rate: f64,
    pub first_price_share: f64,
    pub landscape: LandscapeParams,
    pub render_rate: f64,
    pub click_delay_s: f64,
    pub conv_delay_s: f64,
    pub click_boost: f64,
    pub tmax_grace_ms: u64,
}

/// One bid request, sent to every bidder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestLine {
    pub seq: u64,
    pub request_id: String,
    pub ts_ms: i64,
    pub publisher: String,
    /// The request's `user.id` (frequency caps are judged by it); empty in ledgers
    /// written before it was recorded.
    #[serde(default)]
    pub user: String,
    /// 1 first price, 2 second price.
    pub at: u8,
    pub tmax_ms: u16,
    pub imps: usize,
    pub answers: Vec<AnswerLine>,
}

/// How one bidder answered a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerLine {
    pub bidder: usize,
    /// HTTP status; absent when none came (`error` says why).
    pub status: Option<u16>,
    /// Wall ms from sending to the whole answer.
    pub latency_ms: f64,
    /// After `tmax` (+ `tmax_grace_ms`): its bids lost.
    pub late: bool,
    pub bids: usize,
    /// The no-bid reason a 200 without bids gave (`server.nbr_body = true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbr: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The auction of one imp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Auction {
    pub seq: u64,
    pub request_id: String,
    pub imp_id: String,
    pub ts_ms: i64,
    /// 0 when the imp has none.
    pub floor: f64,
    pub at: u8,
    pub kind: MediaKind,
    pub publisher: String,
    /// One per bid, plus one per bidder that made none for this imp.
    pub entries: Vec<Entry>,
    /// The competing demand's draw (it took part only if at least the floor); absent
    /// with `--no-competition`.
    pub competing: Option<f64>,
    /// The winning bid (`bidder`, `bid_id`), or absent.
    pub winner: Option<WinnerLine>,
    pub competing_won: bool,
    /// What the winner pays; absent when nobody won.
    pub clearing_price: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WinnerLine {
    pub bidder: usize,
    pub bid_id: String,
}

/// What became of one bidder on one imp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No bid for this imp (204, or bids for other imps only).
    NoBid,
    /// A valid bid: it won or was outbid (`loss` 102).
    Bid,
    /// A bid in an answer after `tmax` (`loss` 2).
    Late,
    /// A bid the auction refused (`loss` 3, 8, 100 or 202).
    Invalid,
    /// No usable answer (`error` says why).
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub bidder: usize,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crid: Option<String>,
    /// The bid's `cid` as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    /// The loss reason sent (OpenRTB 5.25); absent for the winner and non-bids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_to_win: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Which notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    Win,
    Bill,
    Loss,
}

/// The bid an event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BidRef {
    pub bidder: usize,
    pub bid_id: String,
    pub seq: u64,
    pub imp_id: String,
    /// The catalog's campaign of the bid's creative; absent when the creative is unknown.
    pub cid: Option<String>,
}

/// One notice call (`nurl`, `burl`, `lurl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub kind: NoticeKind,
    #[serde(flatten)]
    pub bid: BidRef,
    pub ts_ms: i64,
    /// Win and bill: the clearing price sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Loss: the reason sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<u16>,
    /// The final HTTP status; absent when none came or the bid had no such URL.
    pub status: Option<u16>,
    /// Calls made (billing is retried on 503).
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A rendered impression of a winning bid, with the truth of the creative shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Impression {
    #[serde(flatten)]
    pub bid: BidRef,
    pub crid: String,
    pub ts_ms: i64,
    /// The clearing price, USD CPM.
    pub price: f64,
    /// The true click probability, and the conversion probability given a click.
    pub pctr: f64,
    pub pcvr: f64,
    /// The click probability drawn with: `min(1, pctr × click_boost)`.
    pub pctr_used: f64,
}

/// A user's click: the click URL of the markup followed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Click {
    #[serde(flatten)]
    pub bid: BidRef,
    pub ts_ms: i64,
    /// 302 expected; absent when the markup had no click URL or no answer came.
    pub status: Option<u16>,
    /// `ctrbid_click` from the redirect's Location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A conversion postback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversion {
    #[serde(flatten)]
    pub bid: BidRef,
    pub ts_ms: i64,
    /// USD: the campaign's goal CPA; absent for CPC campaigns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Status and error text of a call's result.
pub fn status_of<T>(r: &Result<T, CallError>, status: impl Fn(&T) -> u16) -> (Option<u16>, Option<String>) {
    match r {
        Ok(a) => (Some(status(a)), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

/// Appends records, one line each. Lines are whole: the lock is held for one write.
pub struct Writer {
    out: Mutex<BufWriter<File>>,
}

impl Writer {
    pub fn create(path: &Path) -> anyhow::Result<Writer> {
        let file = File::create(path).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
        Ok(Writer { out: Mutex::new(BufWriter::with_capacity(1 << 20, file)) })
    }

    pub fn write(&self, record: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.out.lock().expect("ledger").write_all(&line)
    }

    pub fn flush(&self) -> std::io::Result<()> {
        self.out.lock().expect("ledger").flush()
    }
}

/// Reads a ledger back, one record at a time.
pub fn records(path: &Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Record>>> {
    use std::io::BufRead as _;
    let file = File::open(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let shown = path.display().to_string();
    Ok(std::io::BufReader::new(file).lines().enumerate().filter_map(move |(i, line)| match line {
        Ok(l) if l.trim().is_empty() => None,
        Ok(l) => Some(serde_json::from_str(&l).map_err(|e| anyhow::anyhow!("{shown} line {}: {e}", i + 1))),
        Err(e) => Some(Err(anyhow::anyhow!("{shown}: {e}"))),
    }))
}

/// Reads a whole ledger back.
pub fn read(path: &Path) -> anyhow::Result<Vec<Record>> {
    records(path)?.collect()
}
