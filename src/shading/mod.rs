//! First-price bid shading learnt from win and loss notices.
//!
//! In a first-price auction the winner pays its bid, so bidding the value `v` earns
//! nothing: the bid should maximise the expected surplus `(v - b) x P(m < b)`, where
//! `m` is the minimum price to win (Zhang, Yuan & Wang, KDD 2014; Pan et al. 2020;
//! Gligorijevic et al., CIKM 2020). Competing prices scale with the imp's floor, so the
//! landscape is learnt for the ratio `r = m / floor_ref` (`floor_ref`: the imp's floor,
//! or 0.5 USD CPM without one; the caller passes it) and modelled log-normal, `ln r ~
//! Normal(mu, sigma)` (Cui et al. 2011). [`optimal_bid`] is the decision rule.
//!
//! Feedback per bid ([`Observation`]): a win tells `m < b` (left-censored), a loss that
//! carries `min_to_win` tells `m` exactly, a loss without it tells `m >= b`
//! (right-censored). **Only outbid losses are observations**: a loss below the floor,
//! too late, or for any other reason says nothing about `m`, and the caller must not
//! pass it. `estimate.rs` fits the censored likelihood.
//!
//! Contexts: the caller keys each observation by a context (a hash of publisher and
//! format) and its parent (the format); above both sits the global level. Each level
//! keeps a window of its last `reservoir` observations and refits every `refit_every`
//! new ones, warm-started. A level is trusted once it has seen `min_observations`; the
//! bid path then shrinks a context's estimate toward its parent's, and the parent's
//! toward the global one, with the parent counting as `prior_weight` observations (the
//! conjugate-prior rule of `level::shrink`). Until some level of a context is
//! trusted, [`Shader::bid`] uses the fixed factor.
//!
//! Concurrency (the contract per level is in `level.rs`). The bid path takes no lock
//! but two `DashMap` shard read locks for two lookups (context, parent; the global level
//! is a field), which writers hold only to insert a new level: values are `Arc<Level>`
//! whose fits are published through atomics, so refits never touch the maps. It
//! neither waits on a refit nor allocates. Not an `ArcSwap` of the whole table: levels
//! refit independently, every `refit_every` observations each, and swapping a copy of
//! up to `max_contexts` entries per refit would cost O(contexts) on the notice path. Memory: at most `max_contexts` contexts and as many parents, each at most
//! `reservoir x 8` bytes of window (2 KiB at 256) plus about 100 bytes; windows grow as
//! observations come. Observations for contexts beyond the bound still teach their
//! parent and the global level, and are counted in [`ShadingStats::untracked`].

mod estimate;
mod level;
mod normal;
mod optimize;
mod settings;
mod snapshot;

#[cfg(test)]
mod tests;

pub use estimate::{Kind, Obs, SIGMA_MAX, SIGMA_MIN};
pub use normal::cdf as normal_cdf;
pub use optimize::{fixed_bid, optimal_bid, DEFAULT_FIXED_FACTOR};
pub use settings::{
    SettingsError, ShadingSettings, DEFAULT_MAX_CONTEXTS, DEFAULT_MIN_OBSERVATIONS, DEFAULT_PRIOR_WEIGHT,
    DEFAULT_REFIT_EVERY, DEFAULT_RESERVOIR, MAX_RESERVOIR,
};
pub use snapshot::{FitSnapshot, LevelSnapshot, ShadingSnapshot};

use dashmap::DashMap;
use estimate::Fit;
use level::{Level, Schedule};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// What the exchange said about one bid. Only wins and losses to a higher bid: a loss
/// for any other reason (below the floor, too late, ...) is no observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Feedback {
    /// Won: first price, so the price paid is the bid and `m < bid`.
    Won,
    /// Lost to a higher bid; `min_to_win` (USD CPM) when the exchange names it.
    Lost { min_to_win: Option<f64> },
}

/// One bid's outcome. Prices in USD CPM; `floor_ref` as passed to [`Shader::bid`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub context: u64,
    pub parent: u64,
    pub floor_ref: f64,
    pub bid: f64,
    pub feedback: Feedback,
}

/// Why a price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The fixed factor: no level of the context is trusted yet.
    Fixed,
    /// [`optimal_bid`] under the shrunk estimate.
    Learnt,
}

/// A price and why it is that price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shaded {
    pub price: f64,
    pub source: Source,
}

/// Counts since start (observations) and sizes now (levels).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShadingStats {
    pub contexts: usize,
    pub learnt_contexts: usize,
    pub parents: usize,
    pub learnt_parents: usize,
    pub global_learnt: bool,
    pub won: u64,
    pub lost_exact: u64,
    pub lost_censored: u64,
    /// Observations with a price that is not finite and positive: dropped.
    pub rejected: u64,
    /// Observations whose context (or parent) was not tracked, the bound being reached.
    pub untracked: u64,
}

/// The learnt shading of one bidder: shared (`Arc<Shader>`) by the notice handlers,
/// which call [`Shader::observe`] from any thread, and the bid path, which calls
/// [`Shader::bid`] and never waits on them (see the module doc).
pub struct Shader {
    settings: ShadingSettings,
    global: Level,
    parents: DashMap<u64, Arc<Level>>,
    contexts: DashMap<u64, Arc<Level>>,
    /// Entries in `parents` and `contexts`: inserts reserve a slot here first, so the
    /// maps never exceed `max_contexts`.
    parent_slots: AtomicUsize,
    context_slots: AtomicUsize,
    counts: Counts,
}

/// The observation counters of [`ShadingStats`].
#[derive(Default)]
struct Counts {
    won: AtomicU64,
    lost_exact: AtomicU64,
    lost_censored: AtomicU64,
    rejected: AtomicU64,
    untracked: AtomicU64,
}

impl Counts {
    fn of(&self, kind: Kind) -> &AtomicU64 {
        match kind {
            Kind::Below => &self.won,
            Kind::Exact => &self.lost_exact,
            Kind::AtLeast => &self.lost_censored,
        }
    }
}

impl Shader {
    /// Settings that fail [`ShadingSettings::validate`] are clamped into range.
    pub fn new(mut settings: ShadingSettings) -> Shader {
        settings.reservoir = settings.reservoir.clamp(2, MAX_RESERVOIR);
        settings.refit_every = settings.refit_every.max(1);
        settings.min_observations = settings.min_observations.max(1);
        Shader {
            global: Level::new(settings.reservoir),
            settings,
            parents: DashMap::new(),
            contexts: DashMap::new(),
            parent_slots: AtomicUsize::new(0),
            context_slots: AtomicUsize::new(0),
            counts: Default::default(),
        }
    }

    /// Takes one notice's feedback (outbid losses and wins only: see the module doc).
    /// Locks the windows of the three levels in turn and refits those that are due, on
    /// this thread.
    pub fn observe(&self, o: &Observation) {
        let ok = |x: f64| x.is_finite() && x > 0.0;
        let (kind, price) = match o.feedback {
            Feedback::Won => (Kind::Below, o.bid),
            Feedback::Lost { min_to_win: Some(m) } => (Kind::Exact, m),
            Feedback::Lost { min_to_win: None } => (Kind::AtLeast, o.bid),
        };
        if !(ok(o.floor_ref) && ok(price) && ok(o.bid)) {
            self.counts.rejected.fetch_add(1, Relaxed);
            return;
        }
        self.counts.of(kind).fetch_add(1, Relaxed);
        let obs = Obs { kind, y: (price / o.floor_ref).ln() as f32 };
        let schedule = Schedule {
            min_observations: u64::from(self.settings.min_observations),
            refit_every: u64::from(self.settings.refit_every),
        };
        for (map, slots, key) in
            [(&self.contexts, &self.context_slots, o.context), (&self.parents, &self.parent_slots, o.parent)]
        {
            match self.level(map, slots, key) {
                Some(level) => level.observe(obs, schedule),
                None => {
                    self.counts.untracked.fetch_add(1, Relaxed);
                }
            }
        }
        self.global.observe(obs, schedule);
    }

    /// The level under `key`, inserted if there is room; `None` when the map is full.
    fn level(&self, map: &DashMap<u64, Arc<Level>>, slots: &AtomicUsize, key: u64) -> Option<Arc<Level>> {
        if let Some(level) = map.get(&key) {
            return Some(Arc::clone(&level));
        }
        let entry = map.entry(key);
        if let dashmap::Entry::Occupied(e) = &entry {
            return Some(Arc::clone(e.get()));
        }
        let max = self.settings.max_contexts;
        slots.fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Arc::clone(&entry.or_insert_with(|| Arc::new(Level::new(self.settings.reservoir)))))
    }

    /// The price for a candidate worth `value` (USD CPM, `>= floor`). Cold start: the
    /// fixed factor until the context, its parent or the global level is trusted; then
    /// [`optimal_bid`] under [`Shader::estimate`]. Lock-free but for two map lookups;
    /// no allocation. A `floor_ref` that is not finite and positive gets the fixed factor.
    pub fn bid(&self, context: u64, parent: u64, value: f64, floor: f64, floor_ref: f64) -> Shaded {
        match self.estimate(context, parent).filter(|_| floor_ref.is_finite() && floor_ref > 0.0) {
            Some((mu, sigma)) => {
                Shaded { price: optimal_bid(value, floor, floor_ref, mu, sigma), source: Source::Learnt }
            }
            None => Shaded { price: fixed_bid(value, floor, self.settings.fixed_factor), source: Source::Fixed },
        }
    }

    /// The `(mu, sigma)` of `ln(m / floor_ref)` that [`Shader::bid`] uses: the trusted
    /// levels among context, parent and global, each shrunk toward the one above it.
    pub fn estimate(&self, context: u64, parent: u64) -> Option<(f64, f64)> {
        let w = self.settings.prior_weight;
        let fit = |p: level::Published| Fit { mu: p.mu, sigma: p.sigma };
        let global = self.global.published().map(fit);
        let parent = self.parents.get(&parent).and_then(|l| l.published());
        let prior = match parent {
            Some(p) => Some(global.map_or(fit(p), |g| level::shrink(p, g, w))),
            None => global,
        };
        let own = self.contexts.get(&context).and_then(|l| l.published());
        let est = match own {
            Some(c) => prior.map_or(fit(c), |p| level::shrink(c, p, w)),
            None => prior?,
        };
        Some((est.mu, est.sigma))
    }

    pub fn stats(&self) -> ShadingStats {
        let learnt = |map: &DashMap<u64, Arc<Level>>| map.iter().filter(|e| e.published().is_some()).count();
        let c = &self.counts;
        ShadingStats {
            contexts: self.contexts.len(),
            learnt_contexts: learnt(&self.contexts),
            parents: self.parents.len(),
            learnt_parents: learnt(&self.parents),
            global_learnt: self.global.published().is_some(),
            won: c.won.load(Relaxed),
            lost_exact: c.lost_exact.load(Relaxed),
            lost_censored: c.lost_censored.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            untracked: c.untracked.load(Relaxed),
        }
    }
}
