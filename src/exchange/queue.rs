//! Pending events, keyed by simulated time: the notices, clicks and conversions the
//! auctions scheduled.
//!
//! Auctions push as their answers arrive; the scheduler pops every event due up to the
//! time of the next request before sending it, and after the last request pops the rest
//! in time order. Events of equal time leave in the order they were pushed. The heap
//! sits behind a `std::sync::Mutex` held for one push or pop, never across an `.await`.

use super::ledger::{BidRef, NoticeKind};
use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Mutex;

/// Something the exchange or its users will do at a simulated time.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// GET a notice URL with its macros filled in.
    Notice { kind: NoticeKind, bid: BidRef, url: Option<String>, price: Option<f64>, loss: Option<u16> },
    /// The user follows the click URL (`None`: the markup had none); `conversion` is the
    /// drawn conversion, if any: its delay after the click (ms) and value.
    Click { bid: BidRef, url: Option<String>, bidder_base: String, conversion: Option<(i64, Option<f64>)> },
    /// POST `{bidder_base}/conv?click=...`.
    Conversion { bid: BidRef, bidder_base: String, click_id: String, value: Option<f64> },
}

/// An event and its time (Unix ms).
#[derive(Debug)]
pub struct Due {
    pub at_ms: i64,
    order: u64,
    pub event: Event,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.order) == (other.at_ms, other.order)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.at_ms, self.order).cmp(&(other.at_ms, other.order))
    }
}

#[derive(Debug, Default)]
pub struct Queue {
    /// The heap and the next push's order number.
    inner: Mutex<(BinaryHeap<Reverse<Due>>, u64)>,
}

impl Queue {
    pub fn push(&self, at_ms: i64, event: Event) {
        let mut inner = self.inner.lock().expect("queue");
        let order = inner.1;
        inner.1 += 1;
        inner.0.push(Reverse(Due { at_ms, order, event }));
    }

    /// The earliest event if it is due at or before `until_ms`.
    pub fn pop_due(&self, until_ms: i64) -> Option<Due> {
        let mut inner = self.inner.lock().expect("queue");
        if inner.0.peek().is_some_and(|d| d.0.at_ms <= until_ms) {
            inner.0.pop().map(|d| d.0)
        } else {
            None
        }
    }

    /// The earliest event.
    pub fn pop(&self) -> Option<Due> {
        self.pop_due(i64::MAX)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("queue").0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid(n: u64) -> BidRef {
        BidRef { bidder: 0, bid_id: format!("{n:x}"), seq: n, imp_id: "1".into(), cid: None }
    }

    fn notice(n: u64) -> Event {
        Event::Notice { kind: NoticeKind::Win, bid: bid(n), url: None, price: None, loss: None }
    }

    #[test]
    fn pops_in_time_order_then_push_order_and_only_when_due() {
        let q = Queue::default();
        q.push(300, notice(1));
        q.push(100, notice(2));
        q.push(300, notice(3));
        q.push(200, notice(4));
        assert!(q.pop_due(99).is_none());
        let seqs: Vec<(i64, u64)> = std::iter::from_fn(|| q.pop_due(250))
            .map(|d| match d.event {
                Event::Notice { bid, .. } => (d.at_ms, bid.seq),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(seqs, [(100, 2), (200, 4)]);
        let rest: Vec<u64> = std::iter::from_fn(|| q.pop())
            .map(|d| match d.event {
                Event::Notice { bid, .. } => bid.seq,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(rest, [1, 3]);
        assert!(q.is_empty());
    }
}
