use super::*;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::sync::Arc;

const DAY: i64 = 86_400;
/// A Monday 00:00 UTC.
const START: i64 = 20_000 * DAY;

fn settings(enabled: bool) -> PacingSettings {
    PacingSettings {
        enabled,
        step_s: 60,
        catch_up_s: 1800,
        smoothing_s: 1800,
        min_rate: 0.001,
        learning: Learning { memory: 0.3, prior_weight: 0.0 },
    }
}

/// Opportunities per minute: a diurnal curve, 5x more at 15:00 than at 03:00.
fn traffic(t: i64) -> u64 {
    let h = (t.rem_euclid(DAY)) as f64 / 3600.0;
    (200.0 * (1.0 + 0.66 * ((h - 9.0) / 24.0 * std::f64::consts::TAU).sin())) as u64
}

/// Spend by UTC hour over `days` days for one campaign whose every opportunity taken
/// costs `cost` micro-USD (a bid held, then billed), in a market with [`traffic`].
fn run(enabled: bool, budget_usd: f64, cost: u64, days: i64) -> (Arc<CampaignPace>, Vec<[u64; HOURS]>, Vec<u64>) {
    let pace = Arc::new(CampaignPace::new("c", budget_usd));
    let ctl = Controller::new(settings(enabled));
    let mut rng = SmallRng::seed_from_u64(7);
    let mut by_day = vec![[0u64; HOURS]; days as usize];
    let mut overspend = vec![0u64; days as usize];
    for minute in 0..days * 1440 {
        let t = START + minute * 60;
        assert!(ctl.due(t));
        assert!(!ctl.due(t), "one step per minute");
        ctl.step(std::slice::from_ref(&pace), t);
        for _ in 0..traffic(t) {
            pace.count_opportunities(1);
            if pace.left_micros() == 0 || !pace.takes(rng.gen()) || !pace.reserve(cost) {
                continue;
            }
            pace.bill(cost, t);
            pace.release(cost);
            by_day[(minute / 1440) as usize][hour_of(t)] += cost;
        }
        let day = (minute / 1440) as usize;
        overspend[day] = overspend[day].max(pace.spent_micros().saturating_sub(pace.budget_micros()));
    }
    (pace, by_day, overspend)
}

#[test]
fn a_paced_day_spends_its_budget_by_its_plan_and_never_more() {
    // At a rate of 1 the campaign could spend 1,440 USD a day; its budget is 100.
    let (pace, by_day, overspend) = run(true, 100.0, 5_000, 2);
    assert_eq!(overspend, vec![0, 0]);
    let plan = pace.ctl.lock().unwrap().profile.clone();
    assert_eq!(plan.days, 1, "day 2 is planned from day 1's traffic");
    let day2 = by_day[1];
    let total: u64 = day2.iter().sum();
    assert!((99_500_000..=100_000_000).contains(&total), "day 2 spent {total} micro-USD of 100 USD");
    for (h, (spent, share)) in day2.iter().zip(plan.shares).enumerate() {
        let planned = share * 100e6;
        let err = (*spent as f64 - planned).abs() / planned;
        assert!(err < 0.10, "hour {h}: spent {spent} against a plan of {planned:.0} ({:.1} % off)", err * 100.0);
    }
    // Day 1 has only the flat prior: it still ends within its budget, and near it.
    let day1: u64 = by_day[0].iter().sum();
    assert!((95_000_000..=100_000_000).contains(&day1), "day 1 spent {day1}");
}

#[test]
fn unpaced_the_budget_is_gone_before_the_morning_is_out() {
    let (_, by_day, overspend) = run(false, 100.0, 5_000, 1);
    assert_eq!(overspend, vec![0]);
    let spent_by_8: u64 = by_day[0][..8].iter().sum();
    assert_eq!(spent_by_8, 100_000_000, "all spent in the first hours: {:?}", by_day[0]);
}

#[test]
fn a_campaign_short_of_traffic_bids_on_everything() {
    // 10 USD of spend a day at most against a budget of 100: the rate stays at 1.
    let (pace, by_day, _) = run(true, 100.0, 35, 1);
    assert!(pace.rate() > 0.999, "rate {}", pace.rate());
    let spent: u64 = by_day[0].iter().sum();
    assert!(spent < 12_000_000, "{spent}");
}

#[test]
fn holds_count_against_the_budget_until_released() {
    let p = CampaignPace::new("c", 1.0);
    assert!(p.reserve(600_000));
    assert!(!p.reserve(500_000), "0.6 held, 0.5 more would pass 1.0");
    assert_eq!(p.refused.load(Ordering::Relaxed), 1);
    p.bill(300_000, START);
    p.release(600_000);
    assert_eq!((p.spent_micros(), p.reserved_micros(), p.left_micros()), (300_000, 0, 700_000));
    assert!(p.reserve(700_000));
    assert!(!p.reserve(1));
    // A new UTC day: spend starts at 0, holds stay.
    p.bill(0, START + DAY);
    assert_eq!((p.spent_micros(), p.reserved_micros()), (0, 700_000));
}

#[test]
fn concurrent_holds_never_pass_the_budget() {
    let p = Arc::new(CampaignPace::new("c", 1.0));
    let held: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let p = Arc::clone(&p);
                s.spawn(move || (0..1000).filter(|_| p.reserve(3_000)).count() as u64)
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(held, 333, "1.0 USD holds 333 bids of 0.003");
    assert_eq!(p.reserved_micros(), 999_000);
}

#[test]
fn the_next_rate_is_need_over_what_a_full_rate_would_spend() {
    let check = |need, spend, taken, opps, expected: f64| {
        let got = next_rate(need, spend, taken, opps, 0.001);
        assert!((got - expected).abs() < 1e-12, "need {need}: {got} vs {expected}");
    };
    check(100.0, 1000.0, 500.0, 100.0, 0.5); // u = 2 per opportunity, 200 at rate 1
    check(400.0, 1000.0, 500.0, 100.0, 1.0); // more than a full rate can spend
    check(0.01, 1000.0, 500.0, 100.0, 0.001); // at least the minimum
    check(-5.0, 1000.0, 500.0, 100.0, 0.001); // ahead of plan
    check(100.0, 0.0, 500.0, 100.0, 1.0); // nothing learnt: bid on everything
}
