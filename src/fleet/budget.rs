//! Budgets shared by leases: each instance bids within a slice of a campaign's daily
//! budget that the fleet granted it, so the bid path never waits on Redis and the
//! fleet never commits more than the budget.
//!
//! **The ledger.** One hash per campaign and day, `<prefix>b:{<day>}:<campaign>` (the
//! braces keep a day's campaigns in one Redis Cluster slot, so one script reads them
//! all), with three fields per instance: `g:<name>` what it was granted today, `c:<name>`
//! what it had committed (spent plus bids in flight) at its last refresh, `s:<name>` its
//! spend, and `t:<name>` when it last refreshed (Redis's clock, ms).
//!
//! **A refresh** ([`LEASE`], at a tick every `fleet.lease_interval_ms`, one call for
//! up to [`LEASE_BATCH`] campaigns: those whose lease a bid found used up, whose last
//! slice is half committed, or that committed anything since a grant older than
//! [`STALE_MS`]) reports the instance's spend and commitments and sets its grant to what it
//! has committed plus a slice: half of what the fleet has left, shared among the live
//! instances (those that refreshed within `fleet.live_window_ms`), and never less than
//! the largest bid it has made (a slice smaller than one bid buys nothing). A grant
//! grows only from what no instance holds (`budget - Σ g`), and shrinks, giving back
//! what the instance holds beyond its slice; an instance that cannot get one bid's
//! worth gives back all it holds idle, so that the end of a budget is not left in
//! pieces too small for any instance to bid with. An instance that stopped refreshing has its
//! grant cut to what it had committed, so its unspent slice goes back to the others.
//!
//! **Invariant:** `Σ g ≤ budget` at every moment, and an instance's bids commit at most
//! its `g` ([`crate::economics::CampaignPace::reserve`]): the fleet's commitments stay
//! within the budget whether or not Redis answers. What can pass it: a bid's bill that
//! reaches its maker after the bid's hold lapsed (`pacing.in_flight_s`), as for one
//! instance alone; while Redis is away (and [`super::Fleet::holds_frozen`] after) holds
//! do not lapse, since the bills of an instance's bids wait in the others' backlogs.
//!
//! **Staleness.** A refresh carries the state of one moment: what the others committed
//! is up to one interval old (the pacing controller plans with it), and a slice used up
//! waits for the next refresh (counted as `lease_refused`). While Redis is away no grant
//! changes: each instance spends what it holds and then stops; a restarted instance
//! holds nothing until Redis answers.
//!
//! **Bills reach the bid's maker.** The load balancer sends a bid's notices to any
//! instance. The one that accepts a win, billing or loss notice for another's bid
//! ([`owner`]: bid ids carry their maker's 16-bit tag) claims it in the notice ledger
//! and, in the same script, appends its [`Outcome`] to the maker's inbox,
//! `<prefix>o:<tag>` ([`super::ledger::CLAIM`]); the maker drains its inbox at every
//! refresh ([`DRAIN`], then [`ACK`]) and applies them as its own notices: the spend
//! counts against its lease, the hold is released, the shading model learns.

use crate::economics::{CampaignPace, Outcome};
use std::sync::Arc;

/// Reports one instance's state for each campaign in `KEYS` and sets its grant.
/// `ARGV`: name, live window ms, then per campaign: budget, spent, committed, least
/// slice (micro-USD). Answers per campaign: grant, the others' commitments, live
/// instances, this instance's spend as the fleet knows it.
pub const LEASE: &str = r"
local me, window = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, h in ipairs(KEYS) do
  local j = 2 + (i - 1) * 4
  local budget, spent, committed, least = tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2]), tonumber(ARGV[j + 3]), tonumber(ARGV[j + 4])
  local stored = tonumber(redis.call('HGET', h, 's:' .. me) or '0')
  if stored > spent then
    committed = committed + stored - spent
    spent = stored
  end
  redis.call('HSET', h, 's:' .. me, spent, 'c:' .. me, committed, 't:' .. me, now)
  local all = redis.call('HGETALL', h)
  local fields = {}
  for k = 1, #all, 2 do fields[all[k]] = tonumber(all[k + 1]) end
  local granted, others, live, mine = 0, 0, 0, fields['g:' .. me] or 0
  for f, v in pairs(fields) do
    local kind, who = string.sub(f, 1, 2), string.sub(f, 3)
    if kind == 't:' then
      if now - v <= window then
        live = live + 1
      else
        local g, c = fields['g:' .. who] or 0, fields['c:' .. who] or 0
        if g > c then
          redis.call('HSET', h, 'g:' .. who, c)
          fields['g:' .. who] = c
        end
      end
    elseif kind == 'c:' and who ~= me then
      others = others + v
    end
  end
  for f, v in pairs(fields) do
    if string.sub(f, 1, 2) == 'g:' then granted = granted + v end
  end
  local left = budget - committed - others
  local slice = math.max(least, math.floor(left / (2 * math.max(live, 1))))
  local target = committed + slice
  local grant = target
  if target > mine then
    local most = mine + math.max(0, budget - granted)
    if most >= committed + least then
      grant = math.min(target, most)
    else
      grant = math.min(mine, committed)
    end
  end
  redis.call('HSET', h, 'g:' .. me, grant)
  redis.call('EXPIRE', h, 172800)
  out[#out + 1] = grant
  out[#out + 1] = others
  out[#out + 1] = live
  out[#out + 1] = spent
end
return out
";

/// Reads up to `ARGV[1]` outcomes from the head of the inbox `KEYS[1]`, leaving them
/// there until [`ACK`]: an instance that fails between the two applies them again
/// (a bill counted twice holds budget back; none is lost).
pub const DRAIN: &str = r"return redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)";

/// Removes the first `ARGV[1]` outcomes of the inbox `KEYS[1]` (those drained: only
/// its owner drains it, and others only append).
pub const ACK: &str = r"redis.call('LTRIM', KEYS[1], tonumber(ARGV[1]), -1) return 1";

/// Campaigns one [`LEASE`] call refreshes at most (a script holds Redis while it runs).
pub const LEASE_BATCH: usize = 64;

/// A campaign that committed anything since its last grant has its lease refreshed at
/// least this often, ms (what the others know of its spend, and it of theirs, is at
/// most this old); an idle one only when a bid asks.
pub const STALE_MS: i64 = 5_000;

/// Outcomes one drain takes at most.
pub const DRAIN_BATCH: usize = 4096;

/// The tag bid ids carry in their top 16 bits: a hash of the instance's name.
pub fn tag_of(instance: &str) -> u16 {
    // FNV-1a, folded: stable across versions and machines.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in instance.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h ^ (h >> 16) ^ (h >> 32) ^ (h >> 48)) as u16
}

/// The tag of the instance that made bid `bid`.
pub fn owner(bid: u64) -> u16 {
    (bid >> 48) as u16
}

/// The first bid id of an instance tagged `tag`: the tag, then 48 bits counting from
/// 47 bits of `seed` (start-up nanoseconds, so a restarted instance does not repeat
/// its last run's ids); the 2^47 ids left before the count reaches the tag last four
/// years at a million bids a second.
pub fn first_bid(tag: u16, seed: u64) -> u64 {
    (u64::from(tag) << 48) | (seed & ((1 << 47) - 1))
}

/// The hash of a campaign's day.
pub fn key(prefix: &str, day: i64, campaign: &str) -> String {
    format!("{prefix}b:{{{day}}}:{campaign}")
}

/// The inbox of the instance tagged `tag`.
pub fn inbox(prefix: &str, tag: u16) -> String {
    format!("{prefix}o:{tag:04x}")
}

/// What a refresh asks for one campaign: `ARGV`'s four numbers.
pub fn ask(pace: &CampaignPace) -> [u64; 4] {
    let spent = pace.spent_micros();
    let committed = spent + pace.reserved_micros();
    // One bid's worth: what each instance may keep idle at the end of the budget.
    [pace.budget_micros(), spent, committed, pace.max_hold_micros()]
}

/// Applies a refresh's answer for UTC day `day` (four numbers per campaign, in `paces`
/// order) at `at_ms`. A campaign whose day rolled while the call ran takes none of it
/// (yesterday's grant and spend are not today's) and asks again.
pub fn apply(paces: &[&Arc<CampaignPace>], reply: &[i64], day: i64, at_ms: i64) {
    for (pace, g) in paces.iter().zip(reply.chunks_exact(4)) {
        if pace.day() > day {
            pace.mark_starved();
            continue;
        }
        let clamp = |v: i64| v.max(0) as u64;
        pace.adopt_spent(clamp(g[3]));
        pace.set_grant(clamp(g[0]), clamp(g[1]), clamp(g[2]).min(u64::from(u32::MAX)) as u32, at_ms);
    }
}

/// Reads drained outcomes; one that does not parse is skipped (named in the count).
pub fn parse(raw: &[String]) -> (Vec<Outcome>, usize) {
    let mut bad = 0;
    let outcomes = raw
        .iter()
        .filter_map(|r| {
            serde_json::from_str(r)
                .map_err(|e| {
                    bad += 1;
                    eprintln!("ctrbid: fleet: an outcome in the inbox does not read ({e}): {r:.200}");
                })
                .ok()
        })
        .collect();
    (outcomes, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bid_ids_carry_their_makers_tag() {
        let tag = tag_of("bidder-a");
        assert_ne!(tag, tag_of("bidder-b"));
        let first = first_bid(tag, u64::MAX);
        assert_eq!(owner(first), tag);
        assert_eq!(owner(first + 1_000_000), tag, "48 bits leave room for the counter");
        assert_eq!(owner(first + (1 << 47) - 1), tag, "2^47 ids before the count reaches the tag");
        assert_eq!(first_bid(tag, 5) & 0xffff_ffff_ffff, 5);
    }

    #[test]
    fn keys_keep_a_day_in_one_cluster_slot() {
        assert_eq!(key("ctrbid:", 20_000, "c1"), "ctrbid:b:{20000}:c1");
        assert_eq!(inbox("ctrbid:", 0xab), "ctrbid:o:00ab");
    }

    #[test]
    fn a_grant_sets_the_lease_and_the_fleet_view() {
        let pace = Arc::new(CampaignPace::new("c", 10.0).leased());
        assert!(!pace.reserve(1), "no lease yet: no bid");
        assert_eq!(pace.lease_refused.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(pace.lease_due(0, i64::MAX), "a refused bid asks for a lease");
        assert!(!pace.lease_due(0, 1000), "asked once: an idle campaign is not asked for again");
        apply(&[&pace], &[2_000_000, 3_000_000, 3, 500_000], 7, 0);
        assert_eq!(pace.lease_micros(), 2_000_000);
        assert_eq!(pace.fleet_view(), (3_000_000, 3));
        assert_eq!(pace.spent_micros(), 500_000, "the fleet's record of this instance's spend");
        assert!(!pace.lease_due(999_999, 1000), "nothing committed since the grant: idle, however old");
        assert!(pace.reserve(700_000));
        assert!(!pace.lease_due(999, 1000), "less than half the slice (1.5) committed, the grant fresh");
        assert!(pace.lease_due(1000, 1000), "committed since a grant now stale");
        assert!(pace.reserve(50_000));
        assert!(pace.lease_due(1, 1000), "half of it committed");
        assert!(pace.reserve(750_000));
        assert!(!pace.reserve(1), "spent + reserved = the lease");
        assert_eq!(ask(&pace), [10_000_000, 500_000, 2_000_000, 750_000], "the least slice: the largest bid");
    }

    #[test]
    fn a_grant_for_yesterday_is_not_taken_after_midnight() {
        let pace = Arc::new(CampaignPace::new("c", 10.0).leased());
        pace.restore_spent(0, Some(7 * 86_400 + 10));
        assert!(pace.roll(8 * 86_400), "the campaign's day 8 begins while the refresh for day 7 runs");
        apply(&[&pace], &[2_000_000, 3_000_000, 3, 500_000], 7, 0);
        assert_eq!((pace.lease_micros(), pace.spent_micros()), (0, 0), "day 7's lease and spend are not day 8's");
        assert!(pace.lease_due(0, 1000), "asked again");
        apply(&[&pace], &[2_000_000, 0, 3, 0], 8, 0);
        assert_eq!(pace.lease_micros(), 2_000_000);
    }

    #[test]
    fn outcomes_round_trip_and_bad_ones_are_skipped() {
        let o = Outcome {
            kind: crate::notice::Kind::Bill,
            bid: 0xabcd_0000_0000_0001,
            campaign: "c 1".into(),
            creative: "k".into(),
            price_usd: Some(2.5),
            charged_micros: 2500,
            loss_reason: None,
            min_to_win_usd: None,
            user: Some(7),
            first_of_impression: true,
            test: false,
        };
        let raw = vec![serde_json::to_string(&o).unwrap(), "{".into(), r#"{"kind":"nope","bid":1}"#.into()];
        let (read, bad) = parse(&raw);
        assert_eq!((read, bad), (vec![o], 2));
    }
}
