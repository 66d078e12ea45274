//! One level of the hierarchy (the global level, a parent, or a context): its window
//! of recent observations on the notice side, its fitted landscape on the bid side.
//!
//! Concurrency contract. Notice handlers ([`Level::observe`], many threads) push into
//! the window under the level's own `Mutex`, which the bid path never takes. Every
//! `refit_every` observations (from the `min_observations`-th on) the pushing thread
//! copies the window under that lock, releases it, fits, and publishes; a flag keeps a
//! second thread from refitting the same level meanwhile (it skips: the next due refit
//! catches up); the flag is released after the publish and acquired before the next
//! refit, so successive publishes of a level are ordered. The bid path reads the
//! published fit ([`Level::published`]) from two atomics with `Relaxed` loads: `mu` and
//! `sigma` share one word (two `f32`s), so a reader never pairs the `mu` of one fit
//! with the `sigma` of another; the weight lives in a second word and may lag or lead
//! by one fit, which moves the shrinkage by at most `refit_every / (n + prior_weight)`
//! while the window fills and not at all once full.

use super::estimate::{self, Fit, Obs, Ring};
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The published word before the first fit: two `f32` NaNs.
const NOT_LEARNT: u64 = u64::MAX;

/// A level's published landscape and the number of observations it was fitted on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published {
    pub mu: f64,
    pub sigma: f64,
    /// Observations in the window the fit came from: its weight against the prior.
    pub weight: u32,
}

/// When a level refits: the first time at `min_observations`, then every `refit_every`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub min_observations: u64,
    pub refit_every: u64,
}

impl Schedule {
    fn due(self, seen: u64) -> bool {
        seen >= self.min_observations && (seen - self.min_observations).is_multiple_of(self.refit_every.max(1))
    }
}

pub struct Level {
    /// `(mu as f32) << 32 | (sigma as f32)` as bits, or [`NOT_LEARNT`].
    params: AtomicU64,
    /// [`Published::weight`] of the fit in `params`.
    weight: AtomicU32,
    /// Set while one thread refits this level.
    refitting: AtomicBool,
    /// The notice side; never locked by the bid path.
    window: Mutex<Window>,
}

/// A level's observations: the ring and how many it has ever taken.
pub struct Window {
    pub ring: Ring,
    /// Observations ever pushed (restored from snapshots): the refit schedule counts it.
    pub seen: u64,
}

impl Level {
    pub fn new(capacity: usize) -> Level {
        Level {
            params: AtomicU64::new(NOT_LEARNT),
            weight: AtomicU32::new(0),
            refitting: AtomicBool::new(false),
            window: Mutex::new(Window { ring: Ring::new(capacity), seen: 0 }),
        }
    }

    /// The fit the bid path uses, or `None` until one is published. Lock-free.
    pub fn published(&self) -> Option<Published> {
        let bits = self.params.load(Relaxed);
        let mu = f64::from(f32::from_bits((bits >> 32) as u32));
        let sigma = f64::from(f32::from_bits(bits as u32));
        (sigma > 0.0 && mu.is_finite()).then(|| Published { mu, sigma, weight: self.weight.load(Relaxed) })
    }

    /// Publishes a fit (its parameters rounded to `f32`).
    pub fn publish(&self, fit: Fit, weight: u32) {
        let bits = (u64::from((fit.mu as f32).to_bits()) << 32) | u64::from((fit.sigma as f32).to_bits());
        self.weight.store(weight, Relaxed);
        self.params.store(bits, Relaxed);
    }

    /// Withdraws the published fit (a restore of a level that had none).
    pub fn unpublish(&self) {
        self.params.store(NOT_LEARNT, Relaxed);
        self.weight.store(0, Relaxed);
    }

    /// Takes one observation; refits on this thread when one is due.
    pub fn observe(&self, obs: Obs, schedule: Schedule) {
        let copy = {
            let mut window = self.lock();
            window.ring.push(obs);
            window.seen += 1;
            let due = schedule.due(window.seen) && !self.refitting.swap(true, Acquire);
            due.then(|| window.ring.as_slice().to_vec())
        };
        if let Some(copy) = copy {
            let _refitting = ClearOnDrop(&self.refitting);
            let start = self.published().map(|p| Fit { mu: p.mu, sigma: p.sigma });
            if let Some(fit) = estimate::fit(&copy, start) {
                self.publish(fit, u32::try_from(copy.len()).unwrap_or(u32::MAX));
            }
        }
    }

    /// The window, for snapshots and restores; a poisoned lock is taken as is (a
    /// panicking observer leaves at most one observation unpushed).
    pub fn lock(&self) -> MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Clears the refitting flag however the refit ends.
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Release);
    }
}

/// `own` shrunk toward `prior` as if the prior were `prior_weight` observations drawn
/// from it: the posterior mean of a normal under the conjugate normal-scaled-inverse-χ²
/// prior with `κ0 = ν0 = prior_weight` centred on the prior's estimate (the parent's:
/// empirical Bayes). With `k = n / (n + w)`:
/// `mu = k mu_own + (1 - k) mu_prior`, `sigma² = k sigma_own² + (1 - k) sigma_prior² +
/// k (1 - k) (mu_own - mu_prior)²` (the last term: a level that disagrees with its
/// prior is less sure of where the landscape is).
pub fn shrink(own: Published, prior: Fit, prior_weight: f64) -> Fit {
    let n = f64::from(own.weight);
    let k = if n + prior_weight > 0.0 { n / (n + prior_weight) } else { 1.0 };
    let mu = k * own.mu + (1.0 - k) * prior.mu;
    let gap = own.mu - prior.mu;
    let var = k * own.sigma * own.sigma + (1.0 - k) * prior.sigma * prior.sigma + k * (1.0 - k) * gap * gap;
    Fit { mu, sigma: var.sqrt() }
}
