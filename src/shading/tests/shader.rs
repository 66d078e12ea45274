//! The shader's contract: cold start, hierarchy, bounds, snapshots, many threads.

use super::super::*;
use super::{Auction, Landscape};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Feeds `n` observations of fixed-factor bids in `context` under `parent`, drawn from
/// `land`; a loss names the minimum to win every other time.
fn feed(shader: &Shader, seed: u64, context: u64, parent: u64, land: Landscape, n: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in 0..n {
        let a = Auction::draw(&mut rng, land);
        let bid = fixed_bid(a.value, a.floor, 0.85);
        let feedback = match (a.m < bid, i % 2 == 0) {
            (true, _) => Feedback::Won,
            (false, exact) => Feedback::Lost { min_to_win: exact.then_some(a.m) },
        };
        shader.observe(&Observation { context, parent, floor_ref: a.floor, bid, feedback });
    }
}

#[test]
fn cold_start_bids_the_fixed_factor_until_a_level_is_trusted() {
    let shader = Shader::new(ShadingSettings::default());
    let check = |value: f64, floor: f64, expected: f64| {
        let got = shader.bid(7, 70, value, floor, floor.max(0.5));
        assert_eq!(got, Shaded { price: expected, source: Source::Fixed }, "value {value} floor {floor}");
    };
    let land = Landscape { mu: 0.5, sigma: 0.5 };
    feed(&shader, 1, 7, 70, land, 49);
    check(10.0, 1.0, 8.5);
    check(10.0, 9.0, 9.0); // not under the floor
    check(10.0, 0.0, 8.5);
    check(2.0, 2.0, 2.0); // value at the floor
    check(1.0, 0.95, 0.95);
    assert_eq!(shader.estimate(7, 70), None);
    assert!(!shader.stats().global_learnt);
    feed(&shader, 2, 7, 70, land, 1); // the 50th observation: every level fits
    let got = shader.bid(7, 70, 10.0, 1.0, 1.0);
    assert_eq!(got.source, Source::Learnt);
    assert!(got.price >= 1.0 && got.price < 8.5, "{got:?}");
    // Another context of another parent has only the global level: learnt too.
    assert_eq!(shader.bid(8, 80, 10.0, 1.0, 1.0).source, Source::Learnt);
    let stats = shader.stats();
    assert_eq!((stats.contexts, stats.learnt_contexts, stats.parents, stats.learnt_parents), (1, 1, 1, 1));
    assert_eq!(stats.won + stats.lost_exact + stats.lost_censored, 50);
}

#[test]
fn a_context_leans_on_its_parent_until_it_has_its_own_data() {
    let shader = Shader::new(ShadingSettings::default());
    let (format, other_format) = (100, 200);
    // The format's busiest context sits at mu 1.6; another format's at 0.4 pulls the
    // global level down. Context 1 has plenty of data at mu 0.9, context 2 only 20 (the
    // fixed-factor bids, about ln 1.13 floors, straddle these landscapes). Interleaved,
    // as notices come, so that every window mixes them.
    for round in 0..30 {
        feed(&shader, round, 10, format, Landscape { mu: 1.6, sigma: 0.4 }, 20);
        feed(&shader, 100 + round, 20, other_format, Landscape { mu: 0.4, sigma: 0.4 }, 20);
        feed(&shader, 200 + round, 1, format, Landscape { mu: 0.9, sigma: 0.4 }, 10);
    }
    feed(&shader, 300, 2, format, Landscape { mu: 0.9, sigma: 0.4 }, 20);
    let (own_mu, _) = shader.estimate(1, format).unwrap();
    let parent = shader.estimate(999, format).unwrap(); // an unseen context: the parent's
    let global = shader.estimate(999, 999).unwrap(); // an unseen parent too: the global
    eprintln!("hierarchy: context 1 mu {own_mu:.3}, parent {parent:.3?}, global {global:.3?}");
    assert_eq!(shader.estimate(2, format), Some(parent), "few observations: the parent's estimate");
    assert!((own_mu - 0.9).abs() < 0.1, "many observations: its own mu {own_mu}, near 0.9");
    assert!(parent.0 > own_mu + 0.2, "the parent {parent:?} mixes the format's contexts");
    assert!(global.0 < parent.0 - 0.2, "the global level {global:?} mixes both formats");
}

#[test]
fn levels_beyond_the_bound_are_not_tracked() {
    let shader = Shader::new(ShadingSettings { max_contexts: 3, ..ShadingSettings::default() });
    for context in 0..5 {
        feed(&shader, context, context, 0, Landscape { mu: 0.5, sigma: 0.5 }, 10);
    }
    let stats = shader.stats();
    assert_eq!((stats.contexts, stats.parents, stats.untracked), (3, 1, 20));
    // Prices that are not finite and positive are dropped.
    for (floor_ref, bid, feedback) in [
        (0.0, 1.0, Feedback::Won),
        (1.0, f64::NAN, Feedback::Won),
        (1.0, 1.0, Feedback::Lost { min_to_win: Some(f64::INFINITY) }),
        (1.0, -1.0, Feedback::Lost { min_to_win: None }),
    ] {
        shader.observe(&Observation { context: 0, parent: 0, floor_ref, bid, feedback });
    }
    let stats = shader.stats();
    assert_eq!((stats.rejected, stats.won + stats.lost_exact + stats.lost_censored), (4, 50));
}

#[test]
fn a_restored_snapshot_bids_the_same() {
    let settings = ShadingSettings { min_observations: 30, ..ShadingSettings::default() };
    let before = Shader::new(settings.clone());
    for (i, mu) in [0.3, 0.9, 1.4].into_iter().enumerate() {
        let i = i as u64;
        feed(&before, i, i, i % 2, Landscape { mu, sigma: 0.5 }, 100 + 50 * i as usize);
    }
    let json = serde_json::to_string(&before.snapshot()).unwrap();
    let after = Shader::new(settings);
    after.restore(serde_json::from_str(&json).unwrap());
    assert_eq!(after.snapshot(), before.snapshot());
    assert_eq!(after.stats().learnt_contexts, 3);
    let same_bids = |when: &str| {
        for context in 0..4 {
            for (value, floor) in [(10.0, 1.0), (3.0, 2.5), (50.0, 0.0), (1.0, 1.0)] {
                let (a, b) = (
                    before.bid(context, context % 2, value, floor, 1.0),
                    after.bid(context, context % 2, value, floor, 1.0),
                );
                assert_eq!(a, b, "{when}: context {context} value {value} floor {floor}");
            }
        }
    };
    same_bids("restored");
    // The windows and refit schedules came back too: more of the same feedback keeps them equal.
    for shader in [&before, &after] {
        feed(shader, 9, 1, 1, Landscape { mu: 0.2, sigma: 0.3 }, 40);
    }
    same_bids("after 40 more observations");
}

#[test]
fn observers_on_many_threads_while_bidding() {
    let shader = Shader::new(ShadingSettings::default());
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let shader = &shader;
            s.spawn(move || feed(shader, t, t % 2, 0, Landscape { mu: 0.5, sigma: 0.5 }, 1_000));
        }
        s.spawn(|| {
            for i in 0..2_000 {
                let got = shader.bid(i % 3, 0, 10.0, 1.0, 1.0);
                assert!((1.0..=10.0).contains(&got.price), "{got:?}");
            }
        });
    });
    let stats = shader.stats();
    assert_eq!(stats.won + stats.lost_exact + stats.lost_censored, 4_000);
    assert_eq!((stats.contexts, stats.learnt_contexts, stats.global_learnt), (2, 2, true));
}
