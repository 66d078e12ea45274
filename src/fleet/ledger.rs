//! The fleet's notice ledger: which (bid, kind) some instance has accepted, in Redis,
//! so that a billing notice replayed to another instance behind the load balancer is
//! refused there as it is at the first.
//!
//! One hash per bid, `<prefix>n:<bid as 16 hex digits>`, a field per accepted kind
//! holding the instance that accepted it, and the key's expiry the longest of its
//! notices' ledger times. One script ([`CLAIM`]) checks and takes a place atomically,
//! with the same rules as the local ledger (`crate::notice`): a repeat is a duplicate,
//! a loss contradicts a win or a bill and the other way round, and the first of a win
//! and a bill is the impression. It runs on the notice path, after the local checks
//! (signature, expiry, price, the instance's own ledger) passed: one round trip per
//! accepted notice, none per bid request.
//!
//! A claim that could not reach Redis leaves the local verdict standing (the notice is
//! accepted: degraded, not refused) and waits in [`Pending`] until Redis answers
//! again, when it is claimed after the fact. A claim the script then finds held by
//! another instance is a notice the fleet applied twice while Redis was away:
//! counted (`double_applied`) and logged. One held by this instance is a call that
//! timed out after it had run: not a double.

use crate::notice::Kind;

/// Checks a (bid, kind) against the hash in `KEYS[1]` and takes it; when new and
/// `KEYS[2]` is given (the bid's maker is another instance), appends `ARGV[4]` (the
/// notice's outcome) to that inbox, kept a day ([`super::budget`]).
/// `ARGV`: kind, seconds to keep the key at least, this instance's name, the outcome.
/// Answers `{code, holder}`: 0 duplicate (holder: who accepted it), 1 new, 2 new and
/// the impression's first word, 3 a loss after a win or a bill, 4 a win or a bill
/// after a loss.
pub const CLAIM: &str = r"
local h, kind, ttl, me = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local held = redis.call('HGET', h, kind)
if held then return {0, held} end
if kind == 'loss' then
  if redis.call('HEXISTS', h, 'win') == 1 or redis.call('HEXISTS', h, 'bill') == 1 then return {3, ''} end
elseif kind == 'win' or kind == 'bill' then
  if redis.call('HEXISTS', h, 'loss') == 1 then return {4, ''} end
end
local first = 0
if kind == 'win' then first = 1 - redis.call('HEXISTS', h, 'bill')
elseif kind == 'bill' then first = 1 - redis.call('HEXISTS', h, 'win') end
redis.call('HSET', h, kind, me)
if redis.call('TTL', h) < ttl then redis.call('EXPIRE', h, ttl) end
if KEYS[2] then
  redis.call('RPUSH', KEYS[2], ARGV[4])
  redis.call('EXPIRE', KEYS[2], 86400)
end
return {1 + first, me}
";

/// Undoes a claim this instance made (`KEYS[1]`, field `ARGV[1]` held by `ARGV[2]`)
/// and the outcome it appended to `KEYS[2]` (`ARGV[3]`), when the notice could not be
/// logged after all and is refused: the exchange's retry must find it unclaimed.
pub const UNCLAIM: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  if KEYS[2] then redis.call('LREM', KEYS[2], -1, ARGV[3]) end
  return 1
end
return 0
";

/// What the fleet says about a notice the instance's own checks accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No instance had it: apply it. `first_of_impression` is the fleet's answer (a win
    /// after a bill another instance took is not the impression's first word).
    New { first_of_impression: bool },
    /// Another instance accepted it (named).
    Duplicate { holder: String },
    /// A loss after a win or bill, or a win or bill after a loss, somewhere in the fleet.
    Contradicts(&'static str),
    /// Redis did not answer: the local verdict stands; claimed later.
    Unshared,
}

impl Claim {
    /// Reads the script's answer.
    pub fn of_reply(code: i64, holder: String) -> Claim {
        match code {
            0 => Claim::Duplicate { holder },
            1 => Claim::New { first_of_impression: false },
            2 => Claim::New { first_of_impression: true },
            3 => Claim::Contradicts("a win or billing notice was already accepted for this bid by the fleet"),
            _ => Claim::Contradicts("a loss notice was already accepted for this bid by the fleet"),
        }
    }
}

/// A notice accepted while Redis was away, to be claimed when it answers again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub kind: Kind,
    pub bid: u64,
    /// Unix s (auction clock) until which the ledger keeps it.
    pub until: i64,
    /// For another instance's bid: its maker's tag and the outcome to forward.
    pub forward: Option<(u16, String)>,
}

/// The Redis key of a bid's hash.
pub fn key(prefix: &str, bid: u64) -> String {
    format!("{prefix}n:{bid:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_read_as_claims() {
        assert_eq!(Claim::of_reply(0, "b".into()), Claim::Duplicate { holder: "b".into() });
        assert_eq!(Claim::of_reply(1, "a".into()), Claim::New { first_of_impression: false });
        assert_eq!(Claim::of_reply(2, "a".into()), Claim::New { first_of_impression: true });
        assert!(matches!(Claim::of_reply(3, String::new()), Claim::Contradicts(w) if w.contains("win or billing")));
        assert!(matches!(Claim::of_reply(4, String::new()), Claim::Contradicts(w) if w.contains("loss notice")));
    }

    #[test]
    fn keys_are_fixed_width_hex_under_the_prefix() {
        assert_eq!(key("ctrbid:", 0xab), "ctrbid:n:00000000000000ab");
        assert_eq!(key("x/", u64::MAX), "x/n:ffffffffffffffff");
    }
}
