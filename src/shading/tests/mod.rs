//! Tests of the shader as a whole; [`normal`](super::normal) and
//! [`optimize`](super::optimize) test themselves. Every random draw is seeded
//! (`ChaCha8Rng`, the same on every platform).

mod recovery;
mod shader;
mod simulation;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// A known landscape for `ln(m / floor_ref)`.
#[derive(Debug, Clone, Copy)]
struct Landscape {
    mu: f64,
    sigma: f64,
}

/// One synthetic auction: `floor_ref` is the floor, the value reaches it, `m` is the
/// highest competing price.
#[derive(Debug, Clone, Copy)]
struct Auction {
    floor: f64,
    value: f64,
    m: f64,
}

impl Auction {
    /// Floors log-uniform in [0.2, 2] USD CPM, values `floor x (1.2 + e^N(0.9, 0.5))`
    /// (median about 3.7 floors), `m` from the landscape.
    fn draw(rng: &mut ChaCha8Rng, land: Landscape) -> Auction {
        let floor = 0.2 * 10f64.powf(rng.gen::<f64>());
        let value = floor * (1.2 + (0.9 + 0.5 * normal(rng)).exp());
        let m = floor * (land.mu + land.sigma * normal(rng)).exp();
        Auction { floor, value, m }
    }

    /// The surplus of bidding `b` (first price: the winner pays its bid).
    fn surplus(&self, b: f64) -> f64 {
        if self.m < b {
            self.value - b
        } else {
            0.0
        }
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}
