//! Model variants served side by side in one bidder: one incumbent and candidates, each
//! with a share of the traffic, each kept apart in what it bid and what came of it.
//!
//! **Assignment.** A request goes to a variant by a stable hash of its personal user id
//! (`user.id`, else `user.buyeruid`, where the request allows personal data) or, without
//! one, of its request id ([`VariantSet::pick`]): a user sees one variant for as long as
//! the shares stand. The hash is salted with the candidates' names, so each experiment
//! draws its own users, while raising a candidate's share only adds users to it. Shares
//! are in basis points (1/10,000); candidates take theirs in the order they were added,
//! the incumbent the rest.
//!
//! **Results.** Each variant has [`VariantCounters`] by name, kept for the process's life
//! in a [`VariantBook`] (a removed variant's late clicks still count for it): requests it
//! scored and bids it made on the bid path; wins, spend, clicks and conversions from the
//! notices, which carry the variant's name and the pCTR of the bid in their signed terms
//! ([`crate::notice::ModelTag`]), so attribution needs no state of the bid. The sum of
//! pCTR over won impressions against the clicks they drew is the live calibration an
//! operator or a canary judge weighs a candidate on.
//!
//! **Shadows.** A shadow variant bids for nothing: on its share of the requests (drawn
//! by request id, whichever variant bids) it scores the same rows as the variant that
//! bids, off the request path, after the answer is made. What it predicted is kept
//! beside what was served ([`VariantCounters`]: rows, the two pCTR sums, how often it
//! ranks another candidate first, the scoring time it cost) and, for every bid the
//! event log keeps, written there ([`crate::events::ShadowRecord`]) to be joined with
//! the bid's outcome. The judge does not look at shadows; an operator adds one as a
//! candidate once its numbers say so.
//!
//! **Invariants.** A set always has exactly one incumbent, first; names are unique within
//! it and match [`valid_name`]; candidates' shares add up to at most [`FULL_SHARE`]
//! (a shadow's share is of the requests it shadows, apart from those).
//! Every variant of a set has the feature spec of the bidder (checked when its model
//! opens) and the same heads as the incumbent, so that selection, which drops CPA
//! campaigns when there is no conversion head, holds for whichever variant scores.

use crate::scoring::{Batcher, ModelInfo, ScoreCache};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// All traffic, in basis points.
pub const FULL_SHARE: u32 = 10_000;

/// The incumbent's name when the configuration gives none.
pub const DEFAULT_NAME: &str = "main";

/// Names a notice URL and a click id can carry as they are, and a Prometheus label
/// value needs no escaping for: 1 to 24 of `a-z`, `0-9`, `_` (a Kubernetes pod-template
/// hash is one).
pub fn valid_name(name: &str) -> bool {
    (1..=24).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// What a variant does with its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Scores and bids for every request no candidate takes.
    Incumbent,
    /// Scores and bids for its share of the requests.
    Candidate,
    /// Scores its share of the requests beside the variant that bids, and bids nothing.
    Shadow,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Incumbent => "incumbent",
            Role::Candidate => "candidate",
            Role::Shadow => "shadow",
        }
    }
}

/// One model serving under a name.
pub struct Variant {
    pub name: String,
    pub role: Role,
    /// Basis points of the traffic (candidates); the incumbent's is what they leave.
    pub share: u32,
    pub model: ModelInfo,
    /// Its own sessions and inference threads: a candidate's cost is its own.
    pub batcher: Arc<Batcher>,
    /// Its own score cache (`scoring.cache_entries`), so no variant answers with
    /// another's scores.
    pub cache: Option<Arc<ScoreCache>>,
    pub counters: Arc<VariantCounters>,
    /// When it joined, Unix seconds of the auction clock (0 where it has none yet).
    pub since_unix: i64,
    /// Its traffic against its model's training rows; `None` without a reference.
    pub drift: Option<Arc<drift::Drift>>,
}

impl std::fmt::Debug for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variant")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("share", &self.share)
            .field("model", &self.model.version)
            .finish_non_exhaustive()
    }
}

/// The variants serving now: the incumbent first, then the candidates in the order they
/// were added. Replaced whole on every change.
#[derive(Debug, Clone)]
pub struct VariantSet {
    variants: Vec<Arc<Variant>>,
    /// Salt of the assignment hash: from the candidates' names.
    salt: u64,
}

impl VariantSet {
    /// A set of one: `incumbent` takes all traffic.
    pub fn of(incumbent: Variant) -> VariantSet {
        VariantSet {
            variants: vec![Arc::new(Variant { role: Role::Incumbent, share: FULL_SHARE, ..incumbent })],
            salt: 0,
        }
    }

    pub fn incumbent(&self) -> &Arc<Variant> {
        &self.variants[0]
    }

    /// Every variant, the incumbent first.
    pub fn all(&self) -> &[Arc<Variant>] {
        &self.variants
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Variant>> {
        self.variants.iter().find(|v| v.name == name)
    }

    /// The variant that scores a request whose personal user id is `user` (else its
    /// request id is `request_id`).
    pub fn pick(&self, user: Option<&str>, request_id: &str) -> &Arc<Variant> {
        if self.variants.len() == 1 {
            return &self.variants[0];
        }
        let key = user.unwrap_or(request_id);
        let bucket = (xxh3_64_with_seed(key.as_bytes(), self.salt) % u64::from(FULL_SHARE)) as u32;
        let mut upper = 0;
        for v in self.candidates() {
            upper += v.share;
            if bucket < upper {
                return v;
            }
        }
        &self.variants[0]
    }

    /// The candidates, in the order they were added.
    pub fn candidates(&self) -> impl Iterator<Item = &Arc<Variant>> {
        self.variants[1..].iter().filter(|v| v.role == Role::Candidate)
    }

    /// The shadows that score request `request_id`: each on its share of the request
    /// ids, drawn apart from the others' by its name.
    pub fn shadows_of<'s>(&'s self, request_id: &'s str) -> impl Iterator<Item = &'s Arc<Variant>> + 's {
        self.variants[1..].iter().filter(move |v| {
            v.role == Role::Shadow
                && (xxh3_64_with_seed(request_id.as_bytes(), xxh3_64_with_seed(v.name.as_bytes(), 0x7368_6164_6f77))
                    % u64::from(FULL_SHARE))
                    < u64::from(v.share)
        })
    }

    /// Whether any shadow serves (one branch on the bid path when none does).
    pub fn has_shadows(&self) -> bool {
        self.variants.iter().any(|v| v.role == Role::Shadow)
    }

    /// Basis points the candidates take together.
    pub fn candidates_share(&self) -> u32 {
        self.candidates().map(|v| v.share).sum()
    }

    /// The set with `candidate` added at `share` basis points. Refused, with the reason,
    /// for a name in use or not [`valid_name`], heads other than the incumbent's, or a
    /// share over what the other candidates leave.
    pub fn with_candidate(&self, candidate: Variant) -> Result<VariantSet, String> {
        self.check_candidate(&candidate.name, candidate.share)?;
        self.with_other(Variant { role: Role::Candidate, ..candidate })
    }

    /// The set with `shadow` added, scoring `shadow.share` basis points of the requests.
    /// Refused as [`VariantSet::with_candidate`] but for the share, which may be any
    /// above 0.
    pub fn with_shadow(&self, shadow: Variant) -> Result<VariantSet, String> {
        self.check_shadow(&shadow.name, shadow.share)?;
        self.with_other(Variant { role: Role::Shadow, ..shadow })
    }

    /// Whether a shadow named `name` may join at `share` basis points.
    pub fn check_shadow(&self, name: &str, share: u32) -> Result<(), String> {
        self.check_name(name)?;
        shadow_share(share)
    }

    fn with_other(&self, candidate: Variant) -> Result<VariantSet, String> {
        let incumbent = self.incumbent();
        if candidate.model.heads != incumbent.model.heads {
            return Err(format!(
                "model {} has heads {} but the incumbent {} has {}: a candidate must predict what the incumbent does",
                candidate.model.path.display(),
                candidate.model.heads.label(),
                incumbent.name,
                incumbent.model.heads.label()
            ));
        }
        let mut set = self.clone();
        set.variants.push(Arc::new(candidate));
        Ok(set.resalted())
    }

    /// Whether a candidate named `name` may join at `share` basis points: a
    /// [`valid_name`] not in use, and a share the other candidates leave room for. What
    /// [`VariantSet::with_candidate`] checks before the model's heads, so a caller can
    /// refuse before opening a model.
    pub fn check_candidate(&self, name: &str, share: u32) -> Result<(), String> {
        self.check_name(name)?;
        let room = FULL_SHARE - self.candidates_share();
        if share == 0 || share > room {
            return Err(format!(
                "share {}: must be above 0 and at most {} (what the candidates leave)",
                bp(share),
                bp(room)
            ));
        }
        Ok(())
    }

    fn check_name(&self, name: &str) -> Result<(), String> {
        if !valid_name(name) {
            return Err(format!("variant name {name:?}: 1 to 24 of a-z, 0-9 and _"));
        }
        if self.get(name).is_some() {
            return Err(format!("a variant named {name} is already serving"));
        }
        Ok(())
    }

    /// The set with candidate or shadow `name` at `share` basis points.
    pub fn with_share(&self, name: &str, share: u32) -> Result<VariantSet, String> {
        let at = self.candidate_index(name)?;
        if self.variants[at].role == Role::Shadow {
            shadow_share(share)?;
            let mut set = self.clone();
            set.variants[at] = Arc::new(self.variants[at].with(Role::Shadow, share));
            return Ok(set);
        }
        let others = self.candidates_share() - self.variants[at].share;
        if share == 0 || share > FULL_SHARE - others {
            return Err(format!(
                "share {}: must be above 0 and at most {} (what the other candidates leave)",
                bp(share),
                bp(FULL_SHARE - others)
            ));
        }
        let mut set = self.clone();
        set.variants[at] = Arc::new(self.variants[at].with(Role::Candidate, share));
        Ok(set)
    }

    /// The set with candidate `name` as the incumbent, and the incumbent gone; the other
    /// candidates keep their shares.
    pub fn promoted(&self, name: &str) -> Result<VariantSet, String> {
        let at = self.candidate_index(name)?;
        if self.variants[at].role == Role::Shadow {
            return Err(format!("{name} is a shadow: add its model as a candidate to let it bid"));
        }
        let mut set = self.clone();
        let new = Arc::new(self.variants[at].with(Role::Incumbent, FULL_SHARE));
        set.variants.remove(at);
        set.variants[0] = new;
        Ok(set.resalted())
    }

    /// The set without candidate or shadow `name`.
    pub fn without(&self, name: &str) -> Result<VariantSet, String> {
        let at = self.candidate_index(name)?;
        let mut set = self.clone();
        set.variants.remove(at);
        Ok(set.resalted())
    }

    /// The set with the incumbent's model info, and its drift measure, replaced (a model
    /// reload; same batcher).
    pub fn with_incumbent_model(&self, model: ModelInfo, drift: Option<Arc<drift::Drift>>) -> VariantSet {
        let mut set = self.clone();
        set.variants[0] = Arc::new(Variant { model, drift, ..self.variants[0].with(Role::Incumbent, FULL_SHARE) });
        set
    }

    fn candidate_index(&self, name: &str) -> Result<usize, String> {
        match self.variants.iter().position(|v| v.name == name) {
            Some(0) => Err(format!("{name} is the incumbent, not a candidate")),
            Some(at) => Ok(at),
            None => Err(format!("no variant named {name} is serving")),
        }
    }

    fn resalted(mut self) -> VariantSet {
        let mut names = String::new();
        for v in self.candidates() {
            names.push_str(&v.name);
            names.push('/');
        }
        self.salt = xxh3_64_with_seed(names.as_bytes(), 0x7661_7269_616e_7473);
        self
    }
}

impl Variant {
    /// The incumbent at start: all traffic, its counters `name`'s in `book`.
    pub fn incumbent(
        name: &str,
        model: ModelInfo,
        batcher: Batcher,
        cache: Option<Arc<ScoreCache>>,
        drift: Option<Arc<drift::Drift>>,
        book: &VariantBook,
    ) -> Variant {
        Variant {
            name: name.to_string(),
            role: Role::Incumbent,
            share: FULL_SHARE,
            model,
            batcher: Arc::new(batcher),
            cache,
            counters: book.counters(name).expect("a new book has room for its first name"),
            since_unix: 0,
            drift,
        }
    }

    fn with(&self, role: Role, share: u32) -> Variant {
        Variant {
            name: self.name.clone(),
            role,
            share,
            model: self.model.clone(),
            batcher: Arc::clone(&self.batcher),
            cache: self.cache.clone(),
            counters: Arc::clone(&self.counters),
            since_unix: self.since_unix,
            drift: self.drift.clone(),
        }
    }
}

/// A shadow's share: any above 0.
fn shadow_share(share: u32) -> Result<(), String> {
    if share == 0 || share > FULL_SHARE {
        return Err(format!("share {}: must be above 0 and at most 1", bp(share)));
    }
    Ok(())
}

/// Basis points as a share (0 to 1) for messages.
fn bp(share: u32) -> String {
    format!("{:.4}", f64::from(share) / f64::from(FULL_SHARE))
}

/// A share (0 to 1) in basis points; `None` outside 0..=1 or not a number.
pub fn share_bp(share: f64) -> Option<u32> {
    (share.is_finite() && (0.0..=1.0).contains(&share)).then(|| (share * f64::from(FULL_SHARE)).round() as u32)
}

/// What one variant did and what came of it. Relaxed atomics: each counter is exact,
/// a reading of several may straddle an update.
#[derive(Debug)]
pub struct VariantCounters {
    pub name: String,
    /// Its latency histogram's slot ([`crate::metrics::VARIANT_SLOTS`]).
    pub slot: u8,
    /// Requests whose rows it was given to score.
    pub requests: AtomicU64,
    /// Of those, requests it did not score in time (past the deadline, or its queue
    /// full): no bid.
    pub late: AtomicU64,
    pub bids: AtomicU64,
    /// Impressions: the first win or billing notice of a bid.
    pub wins: AtomicU64,
    /// Billed, USD millionths.
    pub spend_micro_usd: AtomicU64,
    pub clicks: AtomicU64,
    pub conversions: AtomicU64,
    /// The sum of the pCTR of won impressions, millionths ([`crate::notice::ModelTag`]).
    pub won_pctr_ppm: AtomicU64,
    /// A shadow's scoring of other variants' rows ([`ShadowTally`]).
    pub shadow: ShadowCounters,
}

/// What a shadow predicted beside what was served, on the same rows.
#[derive(Debug, Default)]
pub struct ShadowCounters {
    pub rows: AtomicU64,
    pub imps: AtomicU64,
    /// Sums of pCTR over the rows, millionths: the shadow's and the served variant's.
    pub pctr_ppm: AtomicU64,
    pub served_pctr_ppm: AtomicU64,
    /// Imps where the shadow's highest pCTR is another candidate's than the served one's.
    pub other_top: AtomicU64,
    /// Time its scoring took, from the rows handed over to the scores back.
    pub scoring_ns: AtomicU64,
}

/// A reading of [`ShadowCounters`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ShadowTally {
    pub rows: u64,
    pub imps: u64,
    /// Its mean pCTR over the served variant's on the same rows (1: the same level).
    pub pctr_ratio: Option<f64>,
    /// Share of imps whose first candidate by pCTR it would change.
    pub other_top_share: Option<f64>,
    /// Mean scoring time per shadowed request, ms.
    pub ms_per_request: Option<f64>,
}

impl ShadowCounters {
    /// Counts one request's rows: `pctr` the shadow's and `served` the served variant's,
    /// `imp_rows` the rows of each imp in order, `ns` the time its scoring took.
    pub fn count(&self, pctr: &[f32], served: &[f32], imp_rows: &[usize], ns: u64) {
        let ppm = |p: &[f32]| p.iter().map(|&x| (f64::from(x).clamp(0.0, 1.0) * 1e6).round() as u64).sum::<u64>();
        let top = |p: &[f32]| p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(k, _)| k);
        let mut at = 0;
        let mut other = 0;
        for &k in imp_rows {
            let (s, v) = (&pctr[at..at + k], &served[at..at + k]);
            other += u64::from(top(s) != top(v));
            at += k;
        }
        self.rows.fetch_add(pctr.len() as u64, Ordering::Relaxed);
        self.imps.fetch_add(imp_rows.len() as u64, Ordering::Relaxed);
        self.pctr_ppm.fetch_add(ppm(pctr), Ordering::Relaxed);
        self.served_pctr_ppm.fetch_add(ppm(served), Ordering::Relaxed);
        self.other_top.fetch_add(other, Ordering::Relaxed);
        self.scoring_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn read(&self, requests: u64) -> ShadowTally {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (imps, served) = (get(&self.imps), get(&self.served_pctr_ppm));
        ShadowTally {
            rows: get(&self.rows),
            imps,
            pctr_ratio: (served > 0).then(|| get(&self.pctr_ppm) as f64 / served as f64),
            other_top_share: (imps > 0).then(|| get(&self.other_top) as f64 / imps as f64),
            ms_per_request: (requests > 0).then(|| get(&self.scoring_ns) as f64 / 1e6 / requests as f64),
        }
    }
}

impl VariantCounters {
    fn new(name: &str, slot: u8) -> VariantCounters {
        VariantCounters {
            name: name.to_string(),
            slot,
            requests: AtomicU64::new(0),
            late: AtomicU64::new(0),
            bids: AtomicU64::new(0),
            wins: AtomicU64::new(0),
            spend_micro_usd: AtomicU64::new(0),
            clicks: AtomicU64::new(0),
            conversions: AtomicU64::new(0),
            won_pctr_ppm: AtomicU64::new(0),
            shadow: ShadowCounters::default(),
        }
    }

    pub fn read(&self) -> Tally {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Tally {
            requests: get(&self.requests),
            late: get(&self.late),
            bids: get(&self.bids),
            wins: get(&self.wins),
            spend_usd: get(&self.spend_micro_usd) as f64 / 1e6,
            clicks: get(&self.clicks),
            conversions: get(&self.conversions),
            won_pctr: get(&self.won_pctr_ppm) as f64 / 1e6,
        }
    }
}

/// A reading of [`VariantCounters`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Tally {
    pub requests: u64,
    pub late: u64,
    pub bids: u64,
    pub wins: u64,
    pub spend_usd: f64,
    pub clicks: u64,
    pub conversions: u64,
    /// Clicks the variant expected on its won impressions.
    pub won_pctr: f64,
}

impl Tally {
    /// What was counted since `earlier` (a reading of the same counters).
    pub fn since(&self, earlier: &Tally) -> Tally {
        Tally {
            requests: self.requests.saturating_sub(earlier.requests),
            late: self.late.saturating_sub(earlier.late),
            bids: self.bids.saturating_sub(earlier.bids),
            wins: self.wins.saturating_sub(earlier.wins),
            spend_usd: (self.spend_usd - earlier.spend_usd).max(0.0),
            clicks: self.clicks.saturating_sub(earlier.clicks),
            conversions: self.conversions.saturating_sub(earlier.conversions),
            won_pctr: (self.won_pctr - earlier.won_pctr).max(0.0),
        }
    }

    /// Expected over observed clicks: 1 is calibrated, above 1 predicts too high.
    /// `None` before the first click.
    pub fn calibration(&self) -> Option<f64> {
        (self.clicks > 0).then(|| self.won_pctr / self.clicks as f64)
    }
}

/// The counters of every variant this process has served or heard a notice for, by
/// name. Bounded: past [`crate::metrics::VARIANT_SLOTS`] names, notices for a new one
/// are not counted (and say so in `ctrbid_variant_unknown_notices_total`).
#[derive(Debug, Default)]
pub struct VariantBook {
    known: RwLock<Vec<Arc<VariantCounters>>>,
    unknown: AtomicU64,
}

impl VariantBook {
    /// The counters of `name`, made on first use; `None` when the book is full.
    pub fn counters(&self, name: &str) -> Option<Arc<VariantCounters>> {
        if let Some(c) = self.known.read().unwrap_or_else(|p| p.into_inner()).iter().find(|c| c.name == name) {
            return Some(Arc::clone(c));
        }
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = known.iter().find(|c| c.name == name) {
            return Some(Arc::clone(c));
        }
        if known.len() >= crate::metrics::VARIANT_SLOTS {
            return None;
        }
        let c = Arc::new(VariantCounters::new(name, known.len() as u8));
        known.push(Arc::clone(&c));
        Some(c)
    }

    /// Counts an accepted, non-test notice of a bid `tag` says `variant` made.
    pub fn on_notice(
        &self,
        kind: crate::notice::Kind,
        first_of_impression: bool,
        tag: &crate::notice::ModelTag,
        charged_usd: f64,
    ) {
        use crate::notice::Kind;
        let Some(c) = self.counters(&tag.variant) else {
            self.unknown.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match kind {
            Kind::Win | Kind::Bill if first_of_impression => {
                c.wins.fetch_add(1, Ordering::Relaxed);
                c.won_pctr_ppm.fetch_add(u64::from(tag.pctr_ppm), Ordering::Relaxed);
            }
            Kind::Click => {
                c.clicks.fetch_add(1, Ordering::Relaxed);
            }
            Kind::Conv => {
                c.conversions.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if kind == Kind::Bill && charged_usd > 0.0 {
            c.spend_micro_usd.fetch_add((charged_usd * 1e6).round() as u64, Ordering::Relaxed);
        }
    }

    /// Every known variant's counters.
    pub fn all(&self) -> Vec<Arc<VariantCounters>> {
        self.known.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Prometheus text: each known variant's counters, and the share and model of those
    /// in `set`.
    pub fn render(&self, set: &VariantSet, out: &mut String) {
        let known = self.all();
        type Read = fn(&Tally) -> String;
        let series: [(&str, &str, &str, Read); 8] = [
            ("ctrbid_variant_requests_total", "counter", "Bid requests whose rows the variant scored.", |t| t.requests.to_string()),
            ("ctrbid_variant_late_requests_total", "counter", "Bid requests the variant did not score in time (deadline or full queue): no bid.", |t| t.late.to_string()),
            ("ctrbid_variant_bids_total", "counter", "Bids the variant made.", |t| t.bids.to_string()),
            ("ctrbid_variant_wins_total", "counter", "Impressions the variant won (first win or billing notice of a bid).", |t| t.wins.to_string()),
            ("ctrbid_variant_spend_usd_total", "counter", "Billed spend of the variant's bids, USD.", |t| format!("{:.6}", t.spend_usd)),
            ("ctrbid_variant_clicks_total", "counter", "Clicks on the variant's impressions.", |t| t.clicks.to_string()),
            ("ctrbid_variant_conversions_total", "counter", "Conversions of the variant's clicks.", |t| t.conversions.to_string()),
            ("ctrbid_variant_won_pctr_sum", "counter", "Sum of the predicted click probability over the variant's won impressions: divided by its clicks, its live calibration (1 is calibrated).", |t| format!("{:.6}", t.won_pctr)),
        ];
        let tallies: Vec<(String, Tally)> = known.iter().map(|c| (c.name.clone(), c.read())).collect();
        for (name, kind, help, read) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (variant, t) in &tallies {
                let _ = writeln!(out, "{name}{{variant=\"{variant}\"}} {}", read(t));
            }
        }
        type ReadShadow = fn(&ShadowCounters) -> String;
        let shadow_series: [(&str, &str, ReadShadow); 6] = [
            ("ctrbid_variant_shadow_rows_total", "Rows a shadow variant scored beside the variant that bid.", |c| {
                c.rows.load(Ordering::Relaxed).to_string()
            }),
            ("ctrbid_variant_shadow_imps_total", "Imps a shadow variant scored.", |c| {
                c.imps.load(Ordering::Relaxed).to_string()
            }),
            ("ctrbid_variant_shadow_pctr_sum", "Sum of a shadow's pCTR over the rows it scored.", |c| {
                format!("{:.6}", c.pctr_ppm.load(Ordering::Relaxed) as f64 / 1e6)
            }),
            ("ctrbid_variant_shadow_served_pctr_sum", "Sum of the served variant's pCTR over the same rows.", |c| {
                format!("{:.6}", c.served_pctr_ppm.load(Ordering::Relaxed) as f64 / 1e6)
            }),
            (
                "ctrbid_variant_shadow_other_top_total",
                "Imps where the shadow ranks another candidate first by pCTR than the served variant.",
                |c| c.other_top.load(Ordering::Relaxed).to_string(),
            ),
            ("ctrbid_variant_shadow_scoring_seconds_total", "Time a shadow's scoring took.", |c| {
                format!("{:.6}", c.scoring_ns.load(Ordering::Relaxed) as f64 / 1e9)
            }),
        ];
        let shadows: Vec<&Arc<VariantCounters>> = known
            .iter()
            .filter(|c| {
                c.shadow.rows.load(Ordering::Relaxed) > 0 || set.get(&c.name).is_some_and(|v| v.role == Role::Shadow)
            })
            .collect();
        for (name, help, read) in shadow_series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for c in &shadows {
                let _ = writeln!(out, "{name}{{variant=\"{}\"}} {}", c.name, read(&c.shadow));
            }
        }
        let _ = writeln!(
            out,
            "# HELP ctrbid_variant_share Share of the bid requests assigned to the variant (0 to 1).\n# TYPE ctrbid_variant_share gauge"
        );
        let incumbent_share = FULL_SHARE - set.candidates_share();
        for v in set.all() {
            let share = if v.role == Role::Incumbent { incumbent_share } else { v.share };
            let _ = writeln!(out, "ctrbid_variant_share{{variant=\"{}\"}} {}", v.name, bp(share));
        }
        let _ = writeln!(
            out,
            "# HELP ctrbid_variant_info The variants serving: their model version and role.\n# TYPE ctrbid_variant_info gauge"
        );
        for v in set.all() {
            let _ = writeln!(
                out,
                "ctrbid_variant_info{{variant=\"{}\",model=\"{}\",role=\"{}\"}} 1",
                v.name,
                label_value(&v.model.version),
                v.role.label()
            );
        }
        let _ = writeln!(
            out,
            "# HELP ctrbid_variant_unknown_notices_total Accepted notices of a variant not counted: more variant names than the process keeps.\n\
             # TYPE ctrbid_variant_unknown_notices_total counter\nctrbid_variant_unknown_notices_total {}",
            self.unknown.load(Ordering::Relaxed)
        );
    }
}

/// `s` made safe inside a Prometheus label value.
pub(crate) fn label_value(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' => '_',
            c => c,
        })
        .collect()
}

pub mod drift;
pub mod judge;

#[cfg(test)]
mod tests;
