//! What a run measured: one latency histogram per outcome and the summary built from them.
//!
//! Every latency counts from the request's *intended* send time (its due time in the
//! schedule), so time spent waiting for a connection or behind a slow generator is part
//! of it (coordinated omission corrected). A request the client gave up on, or whose
//! connection failed, is recorded at the time it ended; the "all" percentiles include
//! them. "On time" means a 2xx answer (200 or 204, the bidder's two answers to a valid
//! request) within the deadline; shares are of all recorded requests, and the on-time
//! 200s and 204s are also counted apart, exactly ([`OnTime`]). The same [`Summary`]
//! describes a whole run and each of its phases ([`PhaseSummary`]).

use super::window::Window;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Histograms hold 1 µs .. 1 h in microseconds with 3 significant digits; longer
/// latencies are recorded as 1 h.
const HIST_MAX_US: u64 = 3_600_000_000;
const HIST_DIGITS: u8 = 3;
/// Latencies (besides the deadline) at which the share of on-time answers is reported.
pub const WITHIN_MS: [u64; 3] = [10, 100, 1000];

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200: a bid.
    Ok,
    /// 204: no bid.
    NoContent,
    /// 1xx, 3xx, 2xx other than 200 and 204.
    OtherStatus,
    /// 4xx.
    ClientError,
    /// 5xx.
    ServerError,
    /// Sent (or being sent) on a connection that then failed: I/O or protocol error.
    /// A request lost mid-flight, which a client cannot safely retry.
    Error,
    /// Never sent: the connection could not be opened (refused, reset during the
    /// handshake), as when a server has closed its listener. Safe to retry elsewhere.
    Refused,
    /// Sent, but no full answer within the client timeout of the send.
    Timeout,
    /// Never sent: no connection came free within the client timeout of the due time.
    Unsent,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Ok,
        Outcome::NoContent,
        Outcome::OtherStatus,
        Outcome::ClientError,
        Outcome::ServerError,
        Outcome::Error,
        Outcome::Refused,
        Outcome::Timeout,
        Outcome::Unsent,
    ];

    pub fn of_status(status: u16) -> Outcome {
        match status {
            200 => Outcome::Ok,
            204 => Outcome::NoContent,
            400..=499 => Outcome::ClientError,
            500..=599 => Outcome::ServerError,
            _ => Outcome::OtherStatus,
        }
    }

    /// A 200 or a 204.
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Ok | Outcome::NoContent)
    }

    /// An HTTP response of any status.
    pub fn is_answer(self) -> bool {
        matches!(
            self,
            Outcome::Ok | Outcome::NoContent | Outcome::OtherStatus | Outcome::ClientError | Outcome::ServerError
        )
    }
}

/// Accumulates recorded requests. Single owner: the run's collector.
pub struct Recorder {
    /// Per outcome, indexed like [`Outcome::ALL`], in µs.
    latency: Vec<Histogram<u64>>,
    /// Due time to the request's task first running, in µs: the generator's own delay.
    start_lag: Histogram<u64>,
    /// Thresholds, and per threshold the successes at or under it (exact, not from buckets).
    /// The first threshold is the deadline: `within[0].1 == on_time.ok + on_time.no_content`.
    within: Vec<(Duration, u64)>,
    on_time: OnTime,
}

impl Recorder {
    /// `deadline` first, then [`WITHIN_MS`] (duplicates dropped).
    pub fn new(deadline: Duration) -> Recorder {
        let mut within = vec![(deadline, 0)];
        for ms in WITHIN_MS.map(Duration::from_millis) {
            if ms != deadline {
                within.push((ms, 0));
            }
        }
        let latency = Outcome::ALL.iter().map(|_| histogram()).collect();
        Recorder { latency, start_lag: histogram(), within, on_time: OnTime::default() }
    }

    /// The deadline: a 200 or 204 at or under it is on time.
    pub fn deadline(&self) -> Duration {
        self.within[0].0
    }

    pub fn record(&mut self, outcome: Outcome, latency: Duration, start_lag: Duration) {
        self.latency[outcome as usize].saturating_record(micros(latency));
        self.start_lag.saturating_record(micros(start_lag));
        if outcome.is_success() {
            for (limit, n) in &mut self.within {
                *n += u64::from(latency <= *limit);
            }
        }
        self.on_time.count(outcome, latency <= self.deadline());
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        self.latency[outcome as usize].len()
    }

    /// Requests recorded.
    pub fn total(&self) -> u64 {
        self.latency.iter().map(Histogram::len).sum()
    }

    /// The summary of a run at `offered_rate` whose measured part lasted `elapsed` (first
    /// recorded due time to last recorded completion).
    pub fn summarize(&self, offered_rate: f64, elapsed: Duration) -> Summary {
        let requests = self.total();
        let answered: u64 = Outcome::ALL.iter().filter(|o| o.is_answer()).map(|&o| self.count(o)).sum();
        let mut all = histogram();
        for h in &self.latency {
            all.add(h).expect("histograms share bounds");
        }
        let within: Vec<Within> =
            self.within.iter().map(|&(limit, n)| Within { ms: millis(limit), share: share(n, requests) }).collect();
        Summary {
            offered_rate,
            achieved_rate: rate(answered, elapsed),
            elapsed_s: elapsed.as_secs_f64(),
            requests,
            answered,
            counts: Counts::of(|o| self.count(o)),
            deadline_ms: within[0].ms,
            on_time: self.on_time.clone(),
            on_time_share: within[0].share,
            within,
            latency_ms: LatencyTable {
                all: Percentiles::of(&all),
                ok: Percentiles::of(&self.latency[Outcome::Ok as usize]),
            },
            start_lag_ms: Percentiles::of(&self.start_lag),
            phases: Vec::new(),
            first_error: None,
        }
    }
}

/// The JSON of `--json`; `Display` is the text report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Requests per second the schedule sent.
    pub offered_rate: f64,
    /// HTTP answers (any status) per second of `elapsed_s`.
    pub achieved_rate: f64,
    /// First recorded due time to the last recorded request's end.
    pub elapsed_s: f64,
    /// Requests recorded (warm-up excluded).
    pub requests: u64,
    /// Of which got an HTTP answer of any status.
    pub answered: u64,
    pub counts: Counts,
    pub deadline_ms: f64,
    /// The 200s and the 204s answered within the deadline, counted exactly.
    pub on_time: OnTime,
    /// Share of requests answered 200 or 204 within the deadline.
    pub on_time_share: f64,
    /// The same share at the deadline and at [`WITHIN_MS`].
    pub within: Vec<Within>,
    pub latency_ms: LatencyTable,
    /// How late the generator started requests (a large value means the generator, not
    /// the server, was short of CPU).
    pub start_lag_ms: Percentiles,
    /// Each phase's own figures, in order; a run of one phase has one. Empty in a phase's
    /// own summary (phases do not nest), and then not serialized.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseSummary>,
    /// The first connection error's text, if any (in a phase: the phase's first).
    pub first_error: Option<String>,
}

/// One phase of a run: where it sits and its figures (requests due in the phase only).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseSummary {
    /// Due time of the phase's first request, from the end of the warm-up.
    pub start_s: f64,
    pub duration_s: f64,
    /// `offered_rate` is the phase's rate; `elapsed_s` runs from the phase's start to
    /// the end of the last of its requests.
    #[serde(flatten)]
    pub figures: Summary,
    /// By due time, from the phase's start (`--window-ms`; empty without it).
    pub windows: Vec<Window>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    #[serde(rename = "200")]
    pub ok: u64,
    #[serde(rename = "204")]
    pub no_content: u64,
    pub other_status: u64,
    #[serde(rename = "4xx")]
    pub client_error: u64,
    #[serde(rename = "5xx")]
    pub server_error: u64,
    /// Failed after the request was sent, or while sending it.
    pub errors: u64,
    /// Failed to connect: never sent.
    pub refused: u64,
    pub timeouts: u64,
    pub unsent: u64,
}

impl Counts {
    /// The counts `count` gives for each outcome.
    pub fn of(count: impl Fn(Outcome) -> u64) -> Counts {
        Counts {
            ok: count(Outcome::Ok),
            no_content: count(Outcome::NoContent),
            other_status: count(Outcome::OtherStatus),
            client_error: count(Outcome::ClientError),
            server_error: count(Outcome::ServerError),
            errors: count(Outcome::Error),
            refused: count(Outcome::Refused),
            timeouts: count(Outcome::Timeout),
            unsent: count(Outcome::Unsent),
        }
    }
}

/// Answers within the deadline, by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OnTime {
    #[serde(rename = "200")]
    pub ok: u64,
    #[serde(rename = "204")]
    pub no_content: u64,
}

impl OnTime {
    /// Counts a request that ended with `outcome`, within the deadline or not.
    pub fn count(&mut self, outcome: Outcome, in_time: bool) {
        match outcome {
            Outcome::Ok => self.ok += u64::from(in_time),
            Outcome::NoContent => self.no_content += u64::from(in_time),
            _ => {}
        }
    }

    pub fn total(&self) -> u64 {
        self.ok + self.no_content
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Within {
    pub ms: f64,
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyTable {
    /// Every recorded request, whatever its outcome.
    pub all: Percentiles,
    /// 200 answers only.
    #[serde(rename = "200")]
    pub ok: Percentiles,
}

/// Milliseconds; all zero when nothing was recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        let at = |q: f64| quantile_ms(h, q);
        Percentiles {
            count: h.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p99_9: at(0.999),
            max: if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 },
        }
    }
}

/// Quantile `q` of a histogram of µs, in ms; 0 when it is empty.
pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

fn histogram() -> Histogram<u64> {
    histogram_with(HIST_DIGITS)
}

/// A histogram of [`HIST_MAX_US`] with `digits` significant digits.
pub fn histogram_with(digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, digits).expect("valid histogram bounds")
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `part / whole`, 0 for an empty whole.
pub fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Events per second over `elapsed`, 0 for an empty span.
pub fn rate(events: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        0.0
    } else {
        events as f64 / elapsed.as_secs_f64()
    }
}
