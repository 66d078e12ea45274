//! Where every random draw of the exchange comes from: one ChaCha8 stream per (seed,
//! request sequence, imp index, purpose), keyed by all four (the 256-bit ChaCha key is
//! their little-endian bytes side by side).
//!
//! **Invariant: a draw depends only on its key**, never on how many draws came before,
//! on other imps, on other bidders or on the order answers arrive in. So a rerun with
//! the same seed at another rate gives the same competing bids, tie breaks, renders,
//! clicks, conversions and delays; only what lateness changes (which bids were on time)
//! can move an auction.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// What a stream is for; its number is part of the key (never reuse one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    /// The competing demand's bid on an imp.
    Competing = 1,
    /// Which of the bids tied for the highest price wins.
    Tie = 2,
    /// Whether the winning creative renders.
    Render = 3,
    /// Whether the user clicks, and after how long.
    Click = 4,
    ClickDelay = 5,
    /// Whether a click converts, and after how long.
    Conversion = 6,
    ConversionDelay = 7,
    /// The publishers' landscape offsets (one stream for all, `seq` and `imp` 0).
    Publishers = 8,
    /// Which instance of a fleet a notice, click or conversion reaches (`imp` keyed by
    /// the imp and the call's kind: [`super::engine::Ctx::routed`]).
    Route = 9,
    /// Whether a billing notice is replayed to another instance (`--replay-bills`).
    Replay = 10,
}

/// The stream of one (seed, request, imp, purpose).
pub fn rng(seed: u64, seq: u64, imp: u64, purpose: Purpose) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    for (chunk, word) in key.chunks_exact_mut(8).zip([seed, seq, imp, purpose as u64]) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

/// A uniform draw in `[0, 1)` from its own stream.
pub fn unit(seed: u64, seq: u64, imp: u64, purpose: Purpose) -> f64 {
    rng(seed, seq, imp, purpose).gen()
}

/// A standard normal draw from its own stream.
pub fn normal(seed: u64, seq: u64, imp: u64, purpose: Purpose) -> f64 {
    StandardNormal.sample(&mut rng(seed, seq, imp, purpose))
}

/// Exponential with mean `mean` from a uniform `u` in `[0, 1)`.
pub fn exponential(u: f64, mean: f64) -> f64 {
    -mean * (1.0 - u).ln()
}

/// Log-normal with mean `mean` and log-sd `sigma` from a standard normal `z`.
pub fn lognormal(z: f64, mean: f64, sigma: f64) -> f64 {
    (mean.ln() - sigma * sigma / 2.0 + sigma * z).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draw_depends_on_its_whole_key_only() {
        let a = unit(7, 10, 0, Purpose::Click);
        assert_eq!(a, unit(7, 10, 0, Purpose::Click));
        for other in [unit(8, 10, 0, Purpose::Click), unit(7, 11, 0, Purpose::Click), unit(7, 10, 1, Purpose::Click)] {
            assert_ne!(a, other);
        }
        assert_ne!(a, unit(7, 10, 0, Purpose::Render));
    }

    #[test]
    fn delays_have_their_means() {
        let n = 20_000;
        let exp: f64 = (0..n).map(|i| exponential(unit(1, i, 0, Purpose::ClickDelay), 30.0)).sum::<f64>() / n as f64;
        let logn: f64 =
            (0..n).map(|i| lognormal(normal(1, i, 0, Purpose::ConversionDelay), 7200.0, 1.0)).sum::<f64>() / n as f64;
        assert!((exp / 30.0 - 1.0).abs() < 0.03, "exponential mean {exp}");
        assert!((logn / 7200.0 - 1.0).abs() < 0.05, "log-normal mean {logn}");
    }
}
