//! Point-in-time replay of an impression log through the aggregates: what `ctrbid
//! features --sim` runs so that each training row sees what the bidder would have known
//! when it bid, and no more.
//!
//! A simulator log says which impressions were clicked and converted, not when the
//! notices would have arrived. The replay gives each outcome the time the live exchange
//! (`ctrbid exchange`) would send it: the impression at its auction (its win notice
//! comes before any later auction), the click an exponential delay after it (mean
//! [`Visibility::click_delay_s`], the exchange's 30 s by default) and the conversion
//! another after the click (mean [`Visibility::conv_delay_s`]). Each delay is a pure
//! function of the request and imp ids ([`delay_s`]), so every replay of a log, and
//! a harness that plays the same log to a live bidder, agree on the order of events.
//!
//! The order, which the parity test plays to the bidder too: before the rows of an
//! auction at `t`, every pending click and conversion due at or before `t`, in order of
//! due time and then of scheduling; after them, the auction's own impressions (a row
//! never sees its own impression).

use super::{AggEvent, AggregateStore, EntityKeys, Outcome};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Mean delays of the outcomes after what they follow, seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Visibility {
    pub click_delay_s: f64,
    pub conv_delay_s: f64,
}

impl Default for Visibility {
    /// The exchange's defaults (`ctrbid exchange --click-delay-s 30 --conv-delay-s 7200`).
    fn default() -> Self {
        Visibility { click_delay_s: 30.0, conv_delay_s: 7200.0 }
    }
}

/// Which delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    /// From the impression to its click.
    Click,
    /// From the click to its conversion.
    Conversion,
}

/// The delay of one outcome, whole seconds, at least 1: an exponential draw of mean
/// `mean_s` from the hash of `(request_id, imp_id, which)`.
pub fn delay_s(request_id: &str, imp_id: &str, which: Delay, mean_s: f64) -> i64 {
    let mut bytes = Vec::with_capacity(request_id.len() + imp_id.len() + 2);
    bytes.extend_from_slice(request_id.as_bytes());
    bytes.push(0xff);
    bytes.extend_from_slice(imp_id.as_bytes());
    bytes.push(which as u8);
    // Seeded with "delays".
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(&bytes, 0x6465_6c61_7973);
    // A uniform in (0, 1], never 0: -ln of it is finite.
    let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    ((-u.ln() * mean_s).round() as i64).max(1)
}

/// An outcome waiting for its time. Ordered by due time, then scheduling order (the
/// fields after those never decide: `order` is unique).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    due_s: i64,
    order: u64,
    outcome: Outcome,
    keys: EntityKeys,
}

/// The replay: a store and the outcomes not yet due.
pub struct Replay {
    store: AggregateStore,
    visibility: Visibility,
    pending: BinaryHeap<Reverse<Pending>>,
    scheduled: u64,
}

impl Replay {
    pub fn new(max_entries: usize, visibility: Visibility) -> Replay {
        Replay { store: AggregateStore::new(max_entries), visibility, pending: BinaryHeap::new(), scheduled: 0 }
    }

    /// Applies every pending outcome due at or before `t_s`: call before an auction's rows.
    pub fn advance_to(&mut self, t_s: i64) {
        while let Some(Reverse(p)) = self.pending.peek().copied().filter(|Reverse(p)| p.due_s <= t_s) {
            self.pending.pop();
            self.store.apply(&AggEvent { ts_s: p.due_s, outcome: p.outcome, keys: p.keys });
        }
    }

    /// An impression of the auction at `t_s` (call after its rows), and its click and
    /// conversion when it had them, scheduled.
    pub fn impression(&mut self, t_s: i64, keys: EntityKeys, ids: (&str, &str), clicked: bool, converted: bool) {
        self.store.apply(&AggEvent { ts_s: t_s, outcome: Outcome::Impression, keys });
        if !clicked {
            return;
        }
        let v = self.visibility;
        let click_s = t_s + delay_s(ids.0, ids.1, Delay::Click, v.click_delay_s);
        self.schedule(click_s, Outcome::Click, keys);
        if converted {
            self.schedule(
                click_s + delay_s(ids.0, ids.1, Delay::Conversion, v.conv_delay_s),
                Outcome::Conversion,
                keys,
            );
        }
    }

    fn schedule(&mut self, due_s: i64, outcome: Outcome, keys: EntityKeys) {
        self.scheduled += 1;
        self.pending.push(Reverse(Pending { due_s, order: self.scheduled, outcome, keys }));
    }

    pub fn store(&self) -> &AggregateStore {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregates::{family_key, Family};

    fn keys(user: u64) -> EntityKeys {
        EntityKeys { user: Some(user), publisher: Some(9), campaign: 1, creative: 2, ad_category: 3 }
    }

    fn clicks_of(r: &Replay, user: u64, t: i64) -> f64 {
        r.store().read(|s| s.counts(family_key(Family::User, user, 0)).map_or(0.0, |c| f64::from(c.at(t).clicks[0])))
    }

    #[test]
    fn delays_are_a_function_of_the_ids_with_the_asked_mean() {
        assert_eq!(delay_s("r1", "1", Delay::Click, 30.0), delay_s("r1", "1", Delay::Click, 30.0));
        let n = 20_000;
        let mean = (0..n).map(|i| delay_s(&format!("r{i}"), "1", Delay::Click, 30.0) as f64).sum::<f64>() / n as f64;
        assert!((mean - 30.0).abs() < 1.0, "{mean}");
        assert!((0..n).all(|i| delay_s(&format!("r{i}"), "1", Delay::Conversion, 0.1) >= 1));
    }

    #[test]
    fn a_click_is_seen_only_from_its_due_time_on() {
        let mut r = Replay::new(64, Visibility::default());
        let t = 1_767_571_200;
        r.advance_to(t);
        r.impression(t, keys(5), ("req", "1"), true, false);
        let due = t + delay_s("req", "1", Delay::Click, 30.0);
        r.advance_to(due - 1);
        assert_eq!(clicks_of(&r, 5, due - 1), 0.0, "not before it is due");
        r.advance_to(due);
        assert!(clicks_of(&r, 5, due) > 0.99, "from its due time on");
        assert_eq!(r.store().next_seq(), 2, "the impression and the click");
    }
}
