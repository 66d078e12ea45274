//! Censored maximum likelihood for the landscape of one level: `ln r ~ Normal(mu,
//! sigma)`, where `r = m / floor_ref` is the minimum price to win over the imp's
//! reference price.
//!
//! Three kinds of observation ([`Kind`]): a loss that names the minimum to win gives
//! `ln r` exactly; a win (first price: we paid our bid `b`) says only `ln r < ln(b /
//! floor_ref)` (left-censored); a loss without it says `ln r >= ln(b / floor_ref)`
//! (right-censored). The log-likelihood is `Σ ln φ` over the exact ones, `Σ ln Φ(z)`
//! over the wins and `Σ ln Φ(-z)` over the censored losses.
//!
//! [`fit`] maximises it by Newton's method in `(a, d) = (1 / sigma, mu / sigma)`, where
//! it is concave (Olsen 1978, the Tobit reparameterisation: every term is a concave
//! function of `z = a y - d`, linear in `(a, d)`, and `ln a` is concave). So a
//! backtracking Newton step converges from any start, quadratically near the optimum,
//! in a handful of steps when warm-started from the previous fit; EM with
//! truncated-normal moments converges linearly at the rate of the missing information,
//! which is slow when every observation is censored. Guards: `sigma` stays in
//! [`SIGMA_MIN`, `SIGMA_MAX`] (data that separate wins from losses perfectly would
//! otherwise drive it to 0), `|mu| <= MU_BOUND`, at most [`MAX_STEPS`] steps, and data
//! that bound `ln r` from one side only (all wins, say) give no fit at all
//! ([`identifiable`]).

use super::normal::{ln_cdf, mills};
use serde::{Deserialize, Serialize};

/// The smallest `sigma` a fit returns: the spread of `ln r` is never thinner than 5 %.
pub const SIGMA_MIN: f64 = 0.05;
/// The largest `sigma` a fit returns.
pub const SIGMA_MAX: f64 = 5.0;
/// `|mu|` at most: competing prices within `e^±20` of the reference price.
pub const MU_BOUND: f64 = 20.0;
/// Newton steps per fit at most.
pub const MAX_STEPS: u32 = 50;
/// Step halvings per line search at most.
const MAX_HALVINGS: u32 = 30;
/// The fit has converged when a step moves `(a, d)` by less than this (relative)...
const STEP_TOLERANCE: f64 = 1e-9;
/// ... or when the next would raise the log-likelihood by less than about this.
const DECREMENT_TOLERANCE: f64 = 1e-9;

/// What one observation says about `ln r` relative to its `y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A loss with the minimum to win: `ln r = y`.
    Exact,
    /// A win: `ln r < y`, `y` the log of our bid over the reference price.
    Below,
    /// A loss without the minimum to win: `ln r >= y`.
    AtLeast,
}

/// One observation. `y` is stored in `f32` (a relative precision of 1e-7 on the price
/// is far below the noise) to keep a full window of 256 at 2 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Obs {
    pub kind: Kind,
    pub y: f32,
}

/// A fitted landscape: `ln r ~ Normal(mu, sigma)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    pub mu: f64,
    pub sigma: f64,
}

/// Whether the observations bound `ln r` from both sides, so that the likelihood has
/// a finite maximum (up to the `sigma` floor): an exact one, or a win and a censored
/// loss. All wins push `mu` to -inf, all censored losses to +inf.
pub fn identifiable(obs: &[Obs]) -> bool {
    let has = |k| obs.iter().any(|o| o.kind == k);
    has(Kind::Exact) || (has(Kind::Below) && has(Kind::AtLeast))
}

/// The log-likelihood at `(a, d)` and, when `derivatives`, its gradient and Hessian
/// (`[∂a, ∂d]`, `[∂aa, ∂ad, ∂dd]`).
fn likelihood(obs: &[Obs], a: f64, d: f64, derivatives: bool) -> (f64, [f64; 2], [f64; 3]) {
    let (mut ll, mut g, mut h) = (0.0, [0.0; 2], [0.0; 3]);
    for o in obs {
        let y = f64::from(o.y);
        let z = a * y - d;
        // Censored terms are ln Φ(s z): s = 1 for a win, -1 for a censored loss.
        let s = match o.kind {
            Kind::Exact => {
                ll += a.ln() - 0.5 * z * z;
                if derivatives {
                    g[0] += 1.0 / a - z * y;
                    g[1] += z;
                    h[0] -= 1.0 / (a * a) + y * y;
                    h[1] += y;
                    h[2] -= 1.0;
                }
                continue;
            }
            Kind::Below => 1.0,
            Kind::AtLeast => -1.0,
        };
        let w = s * z;
        ll += ln_cdf(w);
        if derivatives {
            // d ln Φ(w) / dw = λ(w) (the inverse Mills ratio); d² = -λ(w + λ), in (-1, 0).
            let lambda = mills(w);
            let curvature = (lambda * (w + lambda)).clamp(0.0, 1.0);
            g[0] += s * lambda * y;
            g[1] -= s * lambda;
            h[0] -= curvature * y * y;
            h[1] += curvature * y;
            h[2] -= curvature;
        }
    }
    (ll, g, h)
}

/// The maximum-likelihood landscape of `obs`, starting from `start` (the previous fit)
/// when given, else from the mean and spread of the `y`s. `None` when the data do not
/// identify one ([`identifiable`]). Deterministic; never panics.
pub fn fit(obs: &[Obs], start: Option<Fit>) -> Option<Fit> {
    if !identifiable(obs) {
        return None;
    }
    let (a_min, a_max) = (1.0 / SIGMA_MAX, 1.0 / SIGMA_MIN);
    let start =
        start.filter(|f| f.mu.is_finite() && f.sigma.is_finite() && f.sigma > 0.0).unwrap_or_else(|| moments(obs));
    let mut a = (1.0 / start.sigma).clamp(a_min, a_max);
    let mut d = start.mu * a;
    let (mut ll, mut g, mut h) = likelihood(obs, a, d, true);
    for _ in 0..MAX_STEPS {
        // Newton direction for the concave objective: solve (-H) step = g, with a ridge
        // so that a flat direction (every y equal) stays solvable.
        let ridge = 1e-9 * (1.0 - h[0] - h[2]);
        let (haa, had, hdd) = (-h[0] + ridge, -h[1], -h[2] + ridge);
        let mut step = [(hdd * g[0] - had * g[1]), (haa * g[1] - had * g[0])];
        let det = haa * hdd - had * had;
        step = [step[0] / det, step[1] / det];
        // sigma at a bound and pushing past it: move d alone.
        if (a >= a_max && step[0] > 0.0) || (a <= a_min && step[0] < 0.0) || !det.is_finite() || det <= 0.0 {
            step = [0.0, g[1] / hdd];
        }
        // Half the Newton decrement: what the step would gain. Below this the gain is
        // rounding noise in the sum and a line search would only halve in vain.
        if g[0] * step[0] + g[1] * step[1] < DECREMENT_TOLERANCE {
            break;
        }
        let mut t = 1.0;
        let mut accepted = None;
        for _ in 0..MAX_HALVINGS {
            let a1 = (a + t * step[0]).clamp(a_min, a_max);
            let d1 = d + t * step[1];
            let ll1 = likelihood(obs, a1, d1, false).0;
            // Armijo on the step actually taken (after the clamp).
            if ll1 >= ll + 1e-4 * (g[0] * (a1 - a) + g[1] * (d1 - d)) && ll1.is_finite() {
                accepted = Some((a1, d1));
                break;
            }
            t *= 0.5;
        }
        let Some((a1, d1)) = accepted else { break };
        let moved = ((a1 - a) / a).abs().max((d1 - d).abs() / (1.0 + d.abs()));
        (a, d) = (a1, d1);
        if moved < STEP_TOLERANCE {
            break;
        }
        (ll, g, h) = likelihood(obs, a, d, true);
    }
    let fit = Fit { mu: (d / a).clamp(-MU_BOUND, MU_BOUND), sigma: 1.0 / a };
    (fit.mu.is_finite() && fit.sigma.is_finite()).then_some(fit)
}

/// A start for a cold fit: the mean and spread of the `y`s, whatever their kind.
fn moments(obs: &[Obs]) -> Fit {
    let n = obs.len().max(1) as f64;
    let mean = obs.iter().map(|o| f64::from(o.y)).sum::<f64>() / n;
    let var = obs.iter().map(|o| (f64::from(o.y) - mean).powi(2)).sum::<f64>() / n;
    Fit { mu: mean, sigma: var.sqrt().clamp(0.25, SIGMA_MAX) }
}

/// The last `capacity` observations of a level, oldest overwritten first. Grows to its
/// capacity as observations come, so a quiet context costs little.
#[derive(Debug, Clone)]
pub struct Ring {
    obs: Vec<Obs>,
    /// Where the next observation goes once the ring is full; always `< capacity`.
    next: usize,
    capacity: usize,
}

impl Ring {
    /// A ring of `capacity` (at least 1) observations.
    pub fn new(capacity: usize) -> Ring {
        Ring { obs: Vec::new(), next: 0, capacity: capacity.max(1) }
    }

    /// A ring holding the last `capacity` of `obs` (oldest first).
    pub fn from_oldest_first(capacity: usize, obs: &[Obs]) -> Ring {
        let mut ring = Ring::new(capacity);
        for &o in &obs[obs.len().saturating_sub(ring.capacity)..] {
            ring.push(o);
        }
        ring
    }

    pub fn push(&mut self, o: Obs) {
        if self.obs.len() < self.capacity {
            self.obs.push(o);
        } else {
            self.obs[self.next] = o;
            self.next = (self.next + 1) % self.capacity;
        }
    }

    /// The observations, in no particular order (the likelihood does not care).
    pub fn as_slice(&self) -> &[Obs] {
        &self.obs
    }

    /// The observations, oldest first (for snapshots).
    pub fn oldest_first(&self) -> Vec<Obs> {
        let (newer, older) = self.obs.split_at(self.next);
        older.iter().chain(newer).copied().collect()
    }
}
