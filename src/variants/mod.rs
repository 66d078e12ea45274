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
//! **Invariants.** A set always has exactly one incumbent, first; names are unique within
//! it and match [`valid_name`]; candidates' shares add up to at most [`FULL_SHARE`].
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
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Incumbent => "incumbent",
            Role::Candidate => "candidate",
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
        for v in &self.variants[1..] {
            upper += v.share;
            if bucket < upper {
                return v;
            }
        }
        &self.variants[0]
    }

    /// Basis points the candidates take together.
    pub fn candidates_share(&self) -> u32 {
        self.variants[1..].iter().map(|v| v.share).sum()
    }

    /// The set with `candidate` added at `share` basis points. Refused, with the reason,
    /// for a name in use or not [`valid_name`], heads other than the incumbent's, or a
    /// share over what the other candidates leave.
    pub fn with_candidate(&self, candidate: Variant) -> Result<VariantSet, String> {
        self.check_candidate(&candidate.name, candidate.share)?;
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
        set.variants.push(Arc::new(Variant { role: Role::Candidate, ..candidate }));
        Ok(set.resalted())
    }

    /// Whether a candidate named `name` may join at `share` basis points: a
    /// [`valid_name`] not in use, and a share the other candidates leave room for. What
    /// [`VariantSet::with_candidate`] checks before the model's heads, so a caller can
    /// refuse before opening a model.
    pub fn check_candidate(&self, name: &str, share: u32) -> Result<(), String> {
        if !valid_name(name) {
            return Err(format!("variant name {name:?}: 1 to 24 of a-z, 0-9 and _"));
        }
        if self.get(name).is_some() {
            return Err(format!("a variant named {name} is already serving"));
        }
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

    /// The set with candidate `name` at `share` basis points.
    pub fn with_share(&self, name: &str, share: u32) -> Result<VariantSet, String> {
        let at = self.candidate_index(name)?;
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
        let mut set = self.clone();
        let new = Arc::new(self.variants[at].with(Role::Incumbent, FULL_SHARE));
        set.variants.remove(at);
        set.variants[0] = new;
        Ok(set.resalted())
    }

    /// The set without candidate `name`.
    pub fn without(&self, name: &str) -> Result<VariantSet, String> {
        let at = self.candidate_index(name)?;
        let mut set = self.clone();
        set.variants.remove(at);
        Ok(set.resalted())
    }

    /// The set with the incumbent's model info replaced (a model reload; same batcher).
    pub fn with_incumbent_model(&self, model: ModelInfo) -> VariantSet {
        let mut set = self.clone();
        set.variants[0] = Arc::new(Variant { model, ..self.variants[0].with(Role::Incumbent, FULL_SHARE) });
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
        for v in &self.variants[1..] {
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
        }
    }
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
    pub bids: AtomicU64,
    /// Impressions: the first win or billing notice of a bid.
    pub wins: AtomicU64,
    /// Billed, USD millionths.
    pub spend_micro_usd: AtomicU64,
    pub clicks: AtomicU64,
    pub conversions: AtomicU64,
    /// The sum of the pCTR of won impressions, millionths ([`crate::notice::ModelTag`]).
    pub won_pctr_ppm: AtomicU64,
}

impl VariantCounters {
    fn new(name: &str, slot: u8) -> VariantCounters {
        VariantCounters {
            name: name.to_string(),
            slot,
            requests: AtomicU64::new(0),
            bids: AtomicU64::new(0),
            wins: AtomicU64::new(0),
            spend_micro_usd: AtomicU64::new(0),
            clicks: AtomicU64::new(0),
            conversions: AtomicU64::new(0),
            won_pctr_ppm: AtomicU64::new(0),
        }
    }

    pub fn read(&self) -> Tally {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Tally {
            requests: get(&self.requests),
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
        let series: [(&str, &str, &str, Read); 7] = [
            ("ctrbid_variant_requests_total", "counter", "Bid requests whose rows the variant scored.", |t| t.requests.to_string()),
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
fn label_value(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' => '_',
            c => c,
        })
        .collect()
}

pub mod judge;

#[cfg(test)]
mod tests;
