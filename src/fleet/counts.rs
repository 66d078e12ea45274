//! Aggregates shared through one Redis stream: every instance counts the impressions,
//! clicks and conversions that reached the others too, so a fleet serves features
//! built from all of its notices, as one instance alone would.
//!
//! **How.** An instance counts a notice in its own store at once, as before, and keeps
//! the event ([`SharedCount`]) for the next tick. At each tick one script ([`SHARE`])
//! reads the entries the others appended since this instance's last read, then appends
//! this instance's batch: one entry per instance and tick, `<prefix>agg`, fields `i`
//! (the instance's tag) and `d` (the batch, JSON), the stream capped near
//! [`STREAM_MAXLEN`] entries. The instance applies what it read to its store, and logs
//! each as a counted record with its place in the store's sequence
//! ([`crate::events::CountedRecord`]), so a restart rebuilds the store it had.
//!
//! **Staleness.** An event reaches the other instances within two ticks of its notice
//! (one to be appended, one to be read: `2 x fleet.lease_interval_ms`, 400 ms by
//! default), and is applied at its own time (the store adds an event older than an
//! entry's last update as its decayed share, so once applied the counts are what they
//! would have been had it arrived at once). Meanwhile a bid elsewhere reads counts
//! without it.
//!
//! **Where events can be missed.** While Redis is away, events wait in the instance's
//! outbox (at most `fleet.max_unshared`, the oldest dropped beyond, counted) and are
//! appended when it answers. An instance reads from where it left off, so it misses
//! nothing the stream still holds; the stream keeps about [`STREAM_MAXLEN`] entries (at
//! 5 ticks a second, 20,000 s of a 10-instance fleet), and an instance away longer, or
//! restarted (it starts reading at the stream's end), misses the rest. Those events
//! still count where their notices arrived.

use crate::aggregates::Outcome;
use serde::{Deserialize, Serialize};

/// One impression, click or conversion as it travels: what the instance that received
/// the notice counted, enough for another to count the same entities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedCount {
    /// Its time, Unix ms.
    #[serde(rename = "t")]
    pub ts_ms: i64,
    #[serde(rename = "o")]
    pub outcome: Outcome,
    #[serde(rename = "c")]
    pub campaign: String,
    #[serde(rename = "r")]
    pub creative: String,
    /// The entity keys' inputs, as [`crate::events::AggStamp`] has them (0: none).
    #[serde(rename = "u", default)]
    pub user: u64,
    #[serde(rename = "p", default)]
    pub publisher: u64,
    #[serde(rename = "g", default)]
    pub category: u64,
}

/// Reads the entries after `ARGV[1]` (a stream id; empty at an instance's first call:
/// it starts at the stream's end) up to `ARGV[2]` of them, keeps the batches of other
/// instances than `ARGV[3]` (a tag), then appends `ARGV[5]` (when given) as this
/// instance's entry, the stream capped near `ARGV[4]` entries. Answers the id read up
/// to, then the batches.
pub const SHARE: &str = r"
local pos, count, me = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if pos == '' then
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  pos = (last[1] and last[1][1]) or '0-0'
end
local out = {pos}
for _, e in ipairs(redis.call('XRANGE', KEYS[1], '(' .. pos, '+', 'COUNT', count)) do
  out[1] = e[1]
  local f = e[2]
  local from, data
  for k = 1, #f, 2 do
    if f[k] == 'i' then from = f[k + 1] elseif f[k] == 'd' then data = f[k + 1] end
  end
  if from ~= me and data then out[#out + 1] = data end
end
if ARGV[5] then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'i', me, 'd', ARGV[5])
end
return out
";

/// Entries the stream keeps, about (`XADD MAXLEN ~`).
pub const STREAM_MAXLEN: usize = 100_000;

/// Events one tick sends at most (after an outage the outbox is worked off over a few
/// ticks, not in one entry of megabytes).
pub const SEND_BATCH: usize = 8192;

/// Entries one tick reads at most (each is one instance's tick of events).
pub const READ_BATCH: usize = 512;

/// The stream's key.
pub fn key(prefix: &str) -> String {
    format!("{prefix}agg")
}

/// A [`SHARE`] reply read: the position to read from next, and the events of the
/// batches, with how many batches could not be read.
pub fn parse(reply: &[String]) -> Option<(&str, Vec<SharedCount>, usize)> {
    let (pos, batches) = reply.split_first()?;
    let mut events = Vec::new();
    let mut bad = 0;
    for b in batches {
        match serde_json::from_str::<Vec<SharedCount>>(b) {
            Ok(mut batch) => events.append(&mut batch),
            Err(_) => bad += 1,
        }
    }
    Some((pos.as_str(), events, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_travels_as_short_json_and_comes_back_the_same() {
        let c = SharedCount {
            ts_ms: 1_767_571_200_123,
            outcome: Outcome::Click,
            campaign: "cmp-1".into(),
            creative: "cr-\"7\"".into(),
            user: u64::MAX,
            publisher: 0,
            category: 42,
        };
        let batch = serde_json::to_string(&vec![c.clone(), c.clone()]).unwrap();
        assert!(batch.starts_with(r#"[{"t":1767571200123,"o":"Click","c":"cmp-1""#), "{batch}");
        let reply = vec!["1767571200000-3".to_string(), batch, "not json".into()];
        let (pos, events, bad) = parse(&reply).unwrap();
        assert_eq!((pos, events, bad), ("1767571200000-3", vec![c.clone(), c], 1));
        assert!(parse(&[]).is_none());
    }
}
