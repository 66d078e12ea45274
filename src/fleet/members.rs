//! Who is in the fleet: the live instances, in one order every instance agrees on, so
//! that each can take its share of every frequency cap's places
//! ([`crate::freqcap::CapShare`]) without asking the others.
//!
//! One hash, `<prefix>members`, field per instance name, value `joined:seen` (Redis's
//! clock, ms). At every tick an instance stamps its `seen` and reads the live names
//! (seen within `fleet.live_window_ms`), sorted: its rank is its place among them.
//! Names not seen within the window are removed, so one that comes back joins anew.
//!
//! **Joining.** The others learn of a new instance at their next tick, one
//! `fleet.lease_interval_ms` later (or `fleet.tick_timeout_ms` when Redis is slow), and
//! only then give up the places that become its own; until that long has passed since
//! it joined ([`Fleet::settle_ms`](super::Fleet)), the new instance takes none of
//! them. **Leaving.** An instance that stops ticking keeps its places for
//! `live_window_ms` more; then the others divide them, without knowing what it showed
//! (the bound in [`crate::freqcap::CapShare`]'s docs).

/// Stamps `ARGV[1]` (the instance's name) in the members hash `KEYS[1]` and answers how
/// long ago it joined (ms) and then the live names, sorted. `ARGV[2]`: the live window, ms.
pub const MEMBERS: &str = r"
local me, window = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local joined = now
local old = redis.call('HGET', KEYS[1], me)
if old then
  local j, s = string.match(old, '^(%d+):(%d+)$')
  if j and now - tonumber(s) <= window then joined = tonumber(j) end
end
redis.call('HSET', KEYS[1], me, string.format('%d:%d', joined, now))
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for k = 1, #all, 2 do
  local s = tonumber(string.match(all[k + 1], ':(%d+)$') or '0')
  if now - s <= window then
    live[#live + 1] = all[k]
  else
    redis.call('HDEL', KEYS[1], all[k])
  end
end
table.sort(live)
table.insert(live, 1, tostring(now - joined))
return live
";

/// The members hash's key.
pub fn key(prefix: &str) -> String {
    format!("{prefix}members")
}

/// A [`MEMBERS`] reply read: how long ago this instance joined (ms), and the live
/// names, sorted. `None` when it is not a reply the script gives.
pub fn parse(reply: &[String]) -> Option<(i64, &[String])> {
    let (since, live) = reply.split_first()?;
    Some((since.parse().ok()?, live))
}

/// The share of the caps' places of instance `me` in the live set `live` (sorted), when
/// it joined `since_joined_ms` ago and the others take `settle_ms` to see a newcomer.
pub fn share(me: &str, live: &[String], since_joined_ms: i64, settle_ms: i64) -> crate::freqcap::CapShare {
    use crate::freqcap::CapShare;
    let Ok(rank) = live.binary_search_by(|n| n.as_str().cmp(me)) else { return CapShare::NONE };
    if since_joined_ms < settle_ms || live.len() > usize::from(u16::MAX) {
        return CapShare::NONE;
    }
    CapShare { members: live.len() as u16, rank: rank as u16 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freqcap::CapShare;

    #[test]
    fn a_members_reply_gives_this_instance_its_rank_once_settled() {
        let reply: Vec<String> = ["1500", "a", "b", "c"].map(String::from).into();
        let (since, live) = parse(&reply).unwrap();
        assert_eq!(since, 1500);
        assert_eq!(share("b", live, since, 1200), CapShare { members: 3, rank: 1 });
        assert_eq!(share("b", live, since, 2000), CapShare::NONE, "the others may not have seen it yet");
        assert_eq!(share("d", live, since, 0), CapShare::NONE, "not among the live");
        assert!(parse(&["x".to_string()]).is_none());
        assert!(parse(&[]).is_none());
    }
}
