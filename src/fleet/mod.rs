//! State shared by a fleet of bidders behind one load balancer, through Redis
//! (`[fleet] backend = "redis"`); one instance alone keeps it in memory (the default,
//! `backend = "memory"`, where none of this runs).
//!
//! Shared today: the **notice ledger** ([`ledger`]): a notice any instance accepted is
//! refused as a duplicate by every other, and a loss contradicts a win taken elsewhere;
//! and **budgets** ([`budget`]): each instance bids within a lease of each campaign's
//! budget, and the outcomes of its bids come back to it from whichever instance the
//! load balancer sent their notices to; and **frequency caps** ([`members`],
//! [`crate::freqcap::CapShare`]): each instance fills only its share of every cap's
//! places, from a division all live instances agree on; and the **aggregates**
//! ([`counts`]): each instance's store counts every instance's notices, through one
//! stream (see `deploy/README.md#a-fleet`). The event log stays per instance by
//! design: training reads them all (`ctrbid features --events a,b,c`,
//! [`crate::events::join`]).
//!
//! **Where Redis sits.** Never on the bid path: a bid request makes no Redis call. The
//! notice path makes one, after the instance's own checks, bounded by
//! `fleet.timeout_ms`; a background tick every `fleet.lease_interval_ms` makes four or
//! five (the members, the aggregates' stream, leases for the campaigns that need them,
//! the inbox, its acknowledgement).
//!
//! **When Redis is slow or down** ([`redis::Redis`], [`breaker::Breaker`]): after
//! `breaker_failures` failed calls in a row the breaker opens, and notices are checked
//! against the instance's own ledger alone, without waiting (degraded: a replay sent
//! to a *different* instance during the outage is accepted there too). Each such
//! notice is kept (up to `max_unshared`) and claimed in Redis once it answers again
//! ([`Fleet::reconcile`]); a claim another instance holds by then is a notice the
//! fleet applied twice, counted in `ctrbid_fleet_reconciled_total{result="double_applied"}`.
//! The breaker's state and the backlog are in `/readyz`'s answer and `/admin/status`;
//! the instance stays ready (it bids as before).

pub mod breaker;
pub mod budget;
pub mod counts;
pub mod ledger;
pub mod members;
pub mod redis;

use crate::economics::{CampaignPace, Outcome};
use crate::notice::Kind;
use ledger::{Claim, Pending};
use serde::Deserialize;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The instance name without `fleet.instance` or `HOSTNAME`.
const DEFAULT_INSTANCE: &str = "ctrbid";

/// Where shared state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In this process: one instance.
    #[default]
    Memory,
    /// In Redis at `fleet.redis_url`: a fleet.
    Redis,
}

/// `[fleet]`: how instances share state.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    pub backend: Backend,
    /// `redis://host:port[/db]`. Default `redis://127.0.0.1:6379`.
    pub redis_url: String,
    /// This instance's name in the shared state (who accepted a notice). Default: the
    /// `HOSTNAME` environment variable (a pod's name in Kubernetes), else `ctrbid`.
    pub instance: String,
    /// Prefix of every key the bidder writes, so fleets (or environments) can share
    /// one Redis. Default `ctrbid:`.
    pub key_prefix: String,
    /// The longest a Redis call may take before the notice goes on without it, ms.
    /// Default 50.
    pub timeout_ms: u64,
    /// The longest opening a connection may take (after an error, or at the first
    /// call), ms. Default 1000.
    pub connect_timeout_ms: u64,
    /// Failed calls in a row that open the circuit breaker. Default 3.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one call probes, ms. Default 1000.
    pub breaker_open_ms: u64,
    /// Notices accepted while Redis was away kept for claiming later, at most; beyond,
    /// the oldest are dropped (counted). Default 100,000.
    pub max_unshared: usize,
    /// How often the instance refreshes its budget leases and drains the outcomes of
    /// its bids that other instances received, ms. Default 200.
    pub lease_interval_ms: u64,
    /// An instance that has not refreshed within this long is gone: its unspent
    /// leases go back to the others, ms. Default 5000.
    pub live_window_ms: u64,
    /// The longest a background call (lease refresh, inbox) may take, ms: no request
    /// waits on them. Default 1000.
    pub tick_timeout_ms: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            backend: Backend::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            instance: String::new(),
            key_prefix: "ctrbid:".into(),
            timeout_ms: 50,
            connect_timeout_ms: 1000,
            breaker_failures: 3,
            breaker_open_ms: 1000,
            max_unshared: 100_000,
            lease_interval_ms: 200,
            live_window_ms: 5000,
            tick_timeout_ms: 1000,
        }
    }
}

impl FleetConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        let check = |ok: bool, field: &str, why: &str| {
            if ok {
                Ok(())
            } else {
                Err(anyhow::anyhow!("config: fleet.{field} {why}"))
            }
        };
        check((1..=10_000).contains(&self.timeout_ms), "timeout_ms", "must be from 1 to 10000")?;
        check((1..=60_000).contains(&self.connect_timeout_ms), "connect_timeout_ms", "must be from 1 to 60000")?;
        check(self.breaker_failures >= 1, "breaker_failures", "must be at least 1")?;
        check((1..=600_000).contains(&self.breaker_open_ms), "breaker_open_ms", "must be from 1 to 600000")?;
        check(self.max_unshared >= 1, "max_unshared", "must be at least 1")?;
        check((10..=60_000).contains(&self.lease_interval_ms), "lease_interval_ms", "must be from 10 to 60000")?;
        check((1..=60_000).contains(&self.tick_timeout_ms), "tick_timeout_ms", "must be from 1 to 60000")?;
        check(
            self.live_window_ms >= 2 * self.lease_interval_ms,
            "live_window_ms",
            "must be at least twice lease_interval_ms",
        )?;
        check(
            self.instance.len() <= 64 && !self.instance.contains(char::is_whitespace),
            "instance",
            "must be at most 64 characters, no spaces",
        )?;
        if self.backend == Backend::Redis {
            check(!self.key_prefix.is_empty(), "key_prefix", "must not be empty with backend = \"redis\"")?;
            ::redis::Client::open(self.redis_url.as_str())
                .map_err(|e| anyhow::anyhow!("config: fleet.redis_url {:?}: {e}", self.redis_url))?;
        }
        Ok(())
    }

    /// The instance name: `instance`, else `HOSTNAME`, else `ctrbid`.
    pub fn instance_name(&self) -> String {
        if !self.instance.is_empty() {
            return self.instance.clone();
        }
        std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty() && h.len() <= 64)
            .unwrap_or_else(|| DEFAULT_INSTANCE.into())
    }
}

/// Claims by answer, and reconciliations by outcome (`/metrics`).
#[derive(Debug, Default)]
struct Counts {
    new: AtomicU64,
    duplicate: AtomicU64,
    contradiction: AtomicU64,
    unshared: AtomicU64,
    reconciled_shared: AtomicU64,
    reconciled_ours: AtomicU64,
    double_applied: AtomicU64,
    reconciled_contradiction: AtomicU64,
    dropped: AtomicU64,
    /// Outcomes of other instances' bids sent to their inboxes (or kept to send).
    forwarded: AtomicU64,
    /// Outcomes of this instance's bids taken from its inbox, and those unreadable.
    inbox_applied: AtomicU64,
    inbox_bad: AtomicU64,
    /// Lease refreshes that Redis answered, and the campaign leases they set.
    refreshes: AtomicU64,
    leases: AtomicU64,
    /// Aggregate events sent to the others, taken from them, unreadable, and dropped
    /// from a full outbox while Redis was away.
    counts_sent: AtomicU64,
    counts_taken: AtomicU64,
    counts_bad: AtomicU64,
    counts_dropped: AtomicU64,
}

/// The shared state's client: one per bidder, with `backend = "redis"`.
#[derive(Debug)]
pub struct Fleet {
    redis: redis::Redis,
    instance: String,
    prefix: String,
    claim: ::redis::Script,
    pending: Mutex<VecDeque<Pending>>,
    max_pending: usize,
    counts: Counts,
    /// Since when calls fail, ms of [`redis::Redis::monotonic_ms`] plus one; 0 while
    /// they succeed.
    failing_since_ms: AtomicI64,
    /// The tag this instance's bid ids carry ([`budget::tag_of`]), and its inbox key.
    tag: u16,
    inbox: String,
    lease: ::redis::Script,
    drain: ::redis::Script,
    ack: ::redis::Script,
    unclaim: ::redis::Script,
    members: ::redis::Script,
    share: ::redis::Script,
    /// Events counted here since the last tick, for the others ([`counts`]).
    outbox: Mutex<VecDeque<counts::SharedCount>>,
    /// Where this instance's reading of the others' counts stands: a stream id, empty
    /// before the first read.
    counts_pos: Mutex<String>,
    live_window_ms: u64,
    interval: Duration,
    tick_timeout: Duration,
    /// When calls last began to succeed again after failing, ms of
    /// [`redis::Redis::monotonic_ms`]; [`i64::MIN`] before.
    recovered_at_ms: AtomicI64,
}

/// Redis failing this long, ms, is an outage: the instance's bids keep their holds
/// ([`Fleet::holds_frozen`]).
const OUTAGE_MS: i64 = 3000;

/// Pending claims one [`Fleet::reconcile`] takes at most, so a long backlog is worked
/// off over a few ticks rather than in one burst.
const RECONCILE_BATCH: usize = 2048;

impl Fleet {
    /// The client for `cfg` (nothing is connected until the first call); `None` for
    /// the memory backend.
    pub fn new(cfg: &FleetConfig) -> anyhow::Result<Option<Fleet>> {
        if cfg.backend == Backend::Memory {
            return Ok(None);
        }
        let instance = cfg.instance_name();
        if cfg.instance.is_empty() && instance == DEFAULT_INSTANCE {
            // Two instances of one name would take each other's claims for their own.
            eprintln!("ctrbid: fleet: no fleet.instance and no HOSTNAME: this instance is named \"{DEFAULT_INSTANCE}\"; give each instance its own name");
        }
        let breaker = breaker::Breaker::new(cfg.breaker_failures, cfg.breaker_open_ms);
        let redis = redis::Redis::new(
            &cfg.redis_url,
            Duration::from_millis(cfg.timeout_ms),
            Duration::from_millis(cfg.connect_timeout_ms),
            breaker,
        )?;
        let tag = budget::tag_of(&instance);
        Ok(Some(Fleet {
            redis,
            inbox: budget::inbox(&cfg.key_prefix, tag),
            tag,
            instance,
            prefix: cfg.key_prefix.clone(),
            lease: ::redis::Script::new(budget::LEASE),
            drain: ::redis::Script::new(budget::DRAIN),
            ack: ::redis::Script::new(budget::ACK),
            unclaim: ::redis::Script::new(ledger::UNCLAIM),
            members: ::redis::Script::new(members::MEMBERS),
            share: ::redis::Script::new(counts::SHARE),
            outbox: Mutex::new(VecDeque::new()),
            counts_pos: Mutex::new(String::new()),
            live_window_ms: cfg.live_window_ms,
            interval: Duration::from_millis(cfg.lease_interval_ms),
            tick_timeout: Duration::from_millis(cfg.tick_timeout_ms),
            recovered_at_ms: AtomicI64::new(i64::MIN),
            claim: ::redis::Script::new(ledger::CLAIM),
            pending: Mutex::new(VecDeque::new()),
            max_pending: cfg.max_unshared,
            counts: Counts::default(),
            failing_since_ms: AtomicI64::new(0),
        }))
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// How often [`crate::bidder::Bidder::fleet_tick`] runs.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The tag this instance's bid ids carry in their top 16 bits.
    pub fn tag(&self) -> u16 {
        self.tag
    }

    /// The outcome of a notice for bid `bid` as it goes to the bid's maker, when that
    /// is another instance and the notice settles a bid (win, billing, loss); `None`
    /// when this instance applies it.
    pub fn forward_of(&self, outcome: impl FnOnce() -> Outcome, kind: Kind, bid: u64) -> Option<(u16, String)> {
        let owner = budget::owner(bid);
        let settles = matches!(kind, Kind::Win | Kind::Bill | Kind::Loss);
        (settles && owner != self.tag).then(|| (owner, serde_json::to_string(&outcome()).unwrap_or_default()))
    }

    /// Checks that no other instance's name hashes to this one's tag (their bids'
    /// outcomes would land in one inbox); says so at start when one does.
    pub async fn check_tag(&self) -> Option<String> {
        let key = format!("{}tag:{:04x}", self.prefix, self.tag);
        let me = self.instance.as_str();
        let held = self
            .redis
            .run(|mut c| async move {
                let set: Option<String> =
                    ::redis::cmd("SET").arg(&key).arg(me).arg("NX").arg("GET").query_async(&mut c).await?;
                Ok(set)
            })
            .await
            .ok()
            .flatten();
        held.filter(|h| h != me)
    }

    /// One call to Redis: a `PING` (start-up and tests).
    pub async fn ping(&self) -> bool {
        let ok = self
            .redis
            .run(|mut c| async move { ::redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .is_ok();
        self.note(ok);
        ok
    }

    fn note(&self, ok: bool) {
        if ok {
            let since = self.failing_since_ms.swap(0, Ordering::Relaxed);
            let now = self.redis.monotonic_ms();
            if since != 0 && now + 1 - since >= OUTAGE_MS {
                self.recovered_at_ms.store(now, Ordering::Relaxed);
            }
        } else {
            let now = self.redis.monotonic_ms() + 1;
            let _ = self.failing_since_ms.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Claims a notice the instance's own checks accepted: `kind` of `bid`, kept in the
    /// fleet's ledger for `ttl_s` seconds at least.
    /// `forward` is the outcome for the bid's maker ([`Fleet::forward_of`]), appended to
    /// its inbox with the claim.
    pub async fn claim(&self, kind: Kind, bid: u64, ttl_s: i64, until: i64, forward: Option<(u16, String)>) -> Claim {
        match self.run_claim(kind, bid, ttl_s, forward.as_ref()).await {
            Some((code, holder)) => {
                let claim = Claim::of_reply(code, holder);
                if matches!(claim, Claim::New { .. }) && forward.is_some() {
                    self.counts.forwarded.fetch_add(1, Ordering::Relaxed);
                }
                let counter = match claim {
                    Claim::New { .. } => &self.counts.new,
                    Claim::Duplicate { .. } => &self.counts.duplicate,
                    _ => &self.counts.contradiction,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                claim
            }
            None => {
                self.counts.unshared.fetch_add(1, Ordering::Relaxed);
                self.keep(Pending { kind, bid, until, forward });
                Claim::Unshared
            }
        }
    }

    async fn run_claim(
        &self,
        kind: Kind,
        bid: u64,
        ttl_s: i64,
        forward: Option<&(u16, String)>,
    ) -> Option<(i64, String)> {
        let key = ledger::key(&self.prefix, bid);
        let script = &self.claim;
        let instance = self.instance.as_str();
        let reply = self
            .redis
            .run(|mut c| async move {
                let mut call = script.key(key);
                call.arg(kind.label()).arg(ttl_s.max(1)).arg(instance);
                if let Some((owner, outcome)) = forward {
                    call.key(budget::inbox(&self.prefix, *owner)).arg(outcome.as_str());
                }
                call.invoke_async::<(i64, String)>(&mut c).await
            })
            .await;
        self.note(reply.is_ok());
        reply.ok()
    }

    /// Takes back a claim this instance made for a notice it then refused (its event
    /// could not be logged), with the outcome it forwarded; one still waiting for Redis
    /// is dropped from the backlog.
    pub async fn unclaim(&self, kind: Kind, bid: u64, forward: Option<(u16, String)>) {
        {
            let mut q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = q.iter().position(|p| p.kind == kind && p.bid == bid) {
                q.remove(i);
                return;
            }
        }
        let key = ledger::key(&self.prefix, bid);
        let script = &self.unclaim;
        let instance = self.instance.as_str();
        let reply = self
            .redis
            .run(|mut c| async move {
                let mut call = script.key(key);
                call.arg(kind.label()).arg(instance);
                if let Some((owner, outcome)) = &forward {
                    call.key(budget::inbox(&self.prefix, *owner)).arg(outcome.as_str());
                }
                call.invoke_async::<i64>(&mut c).await
            })
            .await;
        self.note(reply.is_ok());
    }

    /// How long the others may take to see a new instance: one tick of theirs, or the
    /// longest a slow one may wait on Redis.
    pub fn settle_ms(&self) -> i64 {
        (self.interval.max(self.tick_timeout)).as_millis() as i64 + self.interval.as_millis() as i64
    }

    /// Stamps this instance in the fleet's members and answers its share of every
    /// cap's places ([`members`]); `None` when Redis did not answer (the share held
    /// stays: while Redis is away nobody's view of the fleet changes).
    pub async fn refresh_members(&self) -> Option<crate::freqcap::CapShare> {
        let (script, key) = (&self.members, members::key(&self.prefix));
        let reply = self
            .redis
            .run_within(self.tick_timeout, |mut c| async move {
                script
                    .key(key)
                    .arg(self.instance.as_str())
                    .arg(self.live_window_ms)
                    .invoke_async::<Vec<String>>(&mut c)
                    .await
            })
            .await;
        self.note(reply.is_ok());
        let reply = reply.ok()?;
        let (since, live) = members::parse(&reply)?;
        Some(members::share(&self.instance, live, since, self.settle_ms()))
    }

    /// Keeps an event this instance counted in its aggregates for the others.
    pub fn count(&self, c: counts::SharedCount) {
        let mut q = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.max_pending {
            q.pop_front();
            self.counts.counts_dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(c);
    }

    /// Sends the events counted here since the last tick and takes those the others
    /// counted since this instance's last read, each given to `apply` ([`counts`]);
    /// false when Redis did not answer (the events wait for the next tick).
    pub async fn share_counts(&self, mut apply: impl FnMut(&counts::SharedCount)) -> bool {
        let batch: Vec<counts::SharedCount> = {
            let mut q = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
            let n = q.len().min(counts::SEND_BATCH);
            q.drain(..n).collect()
        };
        let data = (!batch.is_empty()).then(|| serde_json::to_string(&batch).unwrap_or_default());
        let pos = self.counts_pos.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (script, key, tag) = (&self.share, counts::key(&self.prefix), format!("{:04x}", self.tag));
        let reply = self
            .redis
            .run_within(self.tick_timeout, |mut c| async move {
                let mut call = script.key(key);
                call.arg(pos).arg(counts::READ_BATCH).arg(tag).arg(counts::STREAM_MAXLEN);
                if let Some(d) = &data {
                    call.arg(d.as_str());
                }
                call.invoke_async::<Vec<String>>(&mut c).await
            })
            .await;
        self.note(reply.is_ok());
        let Ok(reply) = reply else {
            // Sent with the next batch (a call that timed out after appending sends
            // them twice: the others count them twice).
            let mut q = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
            for c in batch.into_iter().rev() {
                q.push_front(c);
            }
            while q.len() > self.max_pending {
                q.pop_front();
                self.counts.counts_dropped.fetch_add(1, Ordering::Relaxed);
            }
            return false;
        };
        self.counts.counts_sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let Some((pos, events, bad)) = counts::parse(&reply) else { return true };
        *self.counts_pos.lock().unwrap_or_else(|e| e.into_inner()) = pos.to_string();
        events.iter().for_each(&mut apply);
        self.counts.counts_taken.fetch_add(events.len() as u64, Ordering::Relaxed);
        self.counts.counts_bad.fetch_add(bad as u64, Ordering::Relaxed);
        true
    }

    /// Refreshes this instance's lease of the campaigns in `paces` that are due
    /// ([`CampaignPace::lease_due`]) for UTC day `day`, in calls of
    /// [`budget::LEASE_BATCH`]; false when Redis did not answer (the leases held stay).
    pub async fn refresh_leases(&self, paces: &[Arc<CampaignPace>], day: i64) -> bool {
        let now_ms = self.redis.monotonic_ms();
        let due: Vec<&Arc<CampaignPace>> = paces.iter().filter(|p| p.lease_due(now_ms, budget::STALE_MS)).collect();
        for batch in due.chunks(budget::LEASE_BATCH) {
            let script = &self.lease;
            let reply = self
                .redis
                .run_within(self.tick_timeout, |mut c| async move {
                    let mut call = script.prepare_invoke();
                    call.arg(self.instance.as_str()).arg(self.live_window_ms);
                    for p in batch {
                        call.key(budget::key(&self.prefix, day, &p.id));
                        for v in budget::ask(p) {
                            call.arg(v);
                        }
                    }
                    call.invoke_async::<Vec<i64>>(&mut c).await
                })
                .await;
            self.note(reply.is_ok());
            let Ok(grants) = reply else {
                // Asked again at the next tick.
                batch.iter().for_each(|p| p.mark_starved());
                return false;
            };
            budget::apply(batch, &grants, day, now_ms);
            self.counts.refreshes.fetch_add(1, Ordering::Relaxed);
            self.counts.leases.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        true
    }

    /// Takes the outcomes of this instance's bids that other instances received, and
    /// applies them with `apply`; acknowledged once applied (see [`budget::DRAIN`]).
    /// Returns how many.
    pub async fn drain_inbox(&self, mut apply: impl FnMut(&Outcome)) -> usize {
        let (drain, key) = (&self.drain, self.inbox.as_str());
        let raw =
            self.redis
                .run(|mut c| async move {
                    drain.key(key).arg(budget::DRAIN_BATCH).invoke_async::<Vec<String>>(&mut c).await
                })
                .await;
        self.note(raw.is_ok());
        let Ok(raw) = raw else { return 0 };
        if raw.is_empty() {
            return 0;
        }
        let (outcomes, bad) = budget::parse(&raw);
        outcomes.iter().for_each(&mut apply);
        self.counts.inbox_applied.fetch_add(outcomes.len() as u64, Ordering::Relaxed);
        self.counts.inbox_bad.fetch_add(bad as u64, Ordering::Relaxed);
        let (ack, n) = (&self.ack, raw.len());
        let acked = self
            .redis
            .run_within(self.tick_timeout, |mut c| async move { ack.key(key).arg(n).invoke_async::<i64>(&mut c).await })
            .await;
        self.note(acked.is_ok());
        raw.len()
    }

    fn keep(&self, p: Pending) {
        let mut q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.max_pending {
            q.pop_front();
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(p);
    }

    /// Claims the notices accepted while Redis was away, oldest first, until the
    /// backlog is empty, a batch is done, or Redis fails again; `now` is the auction
    /// clock (Unix s). Returns how many were claimed.
    pub async fn reconcile(&self, now: i64) -> usize {
        let mut done = 0;
        while done < RECONCILE_BATCH {
            let Some(p) = self.pending.lock().unwrap_or_else(|e| e.into_inner()).pop_front() else { break };
            if p.until < now && p.forward.is_none() {
                // Its notice URLs have expired everywhere: nothing can replay it now.
                done += 1;
                continue;
            }
            // One carrying another instance's outcome is claimed whatever its age: the
            // bid's maker must hear what it cost.
            let ttl = (p.until - now).max(1);
            let Some((code, holder)) = self.run_claim(p.kind, p.bid, ttl, p.forward.as_ref()).await else {
                self.pending.lock().unwrap_or_else(|e| e.into_inner()).push_front(p);
                break;
            };
            done += 1;
            match Claim::of_reply(code, holder) {
                Claim::New { .. } => {
                    if p.forward.is_some() {
                        self.counts.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                    self.counts.reconciled_shared.fetch_add(1, Ordering::Relaxed)
                }
                Claim::Duplicate { holder } if holder == self.instance => {
                    // The first call ran, forward included, before timing out.
                    if p.forward.is_some() {
                        self.counts.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                    self.counts.reconciled_ours.fetch_add(1, Ordering::Relaxed)
                }
                Claim::Duplicate { holder } => {
                    eprintln!(
                        "ctrbid: fleet: the {} notice of bid {:x} was applied here and by {holder} while Redis was unreachable",
                        p.kind.label(),
                        p.bid
                    );
                    self.counts.double_applied.fetch_add(1, Ordering::Relaxed)
                }
                Claim::Contradicts(_) | Claim::Unshared => {
                    self.counts.reconciled_contradiction.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
        done
    }

    /// Whether this instance's bids keep their budget holds past their time: while
    /// Redis has failed for [`OUTAGE_MS`] or more, and for `live_window_ms` after it
    /// answers again (a call timing out now and then on a busy box, or the breaker
    /// opening for a second, freezes nothing). Meanwhile the
    /// outcomes of its bids that other instances accepted wait in their backlogs (and
    /// are sent within a few ticks of its return); a hold given back before its bill
    /// arrives would be spent twice. The cost: during an outage an instance bids only
    /// with what its lease holds beyond every bid it made.
    pub fn holds_frozen(&self) -> bool {
        let now = self.redis.monotonic_ms();
        let since = self.failing_since_ms.load(Ordering::Relaxed);
        (since != 0 && now + 1 - since >= OUTAGE_MS)
            || now.saturating_sub(self.recovered_at_ms.load(Ordering::Relaxed)) < self.live_window_ms as i64
    }

    /// Whether the last call to Redis failed.
    pub fn failing(&self) -> bool {
        self.failing_since_ms.load(Ordering::Relaxed) != 0
    }

    /// Notices waiting to be claimed.
    pub fn unshared(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Why the instance is degraded, for `/readyz` and `/admin/status`; `None` while
    /// Redis answers and nothing waits.
    pub fn degraded(&self) -> Option<String> {
        let since = self.failing_since_ms.load(Ordering::Relaxed);
        let pending = self.unshared();
        if since == 0 && pending == 0 {
            return None;
        }
        let mut why = String::new();
        if since != 0 {
            let s = (self.redis.monotonic_ms() + 1 - since).max(0) as f64 / 1e3;
            let _ = write!(why, "Redis unreachable for {s:.1} s ({}); ", self.redis.last_error());
        }
        let _ = write!(
            why,
            "notices checked by this instance alone, {pending} to claim in the fleet's ledger; bids within the budget leases held"
        );
        Some(why)
    }

    /// `/admin/status`'s `fleet`.
    pub fn status(&self) -> serde_json::Value {
        let c = &self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "backend": "redis",
            "instance": self.instance,
            "tag": format!("{:04x}", self.tag),
            "breaker_open": self.redis.breaker.is_open(),
            "degraded": self.degraded(),
            "unshared_notices": self.unshared(),
            "claims": { "new": get(&c.new), "duplicate": get(&c.duplicate), "contradiction": get(&c.contradiction), "unshared": get(&c.unshared) },
            "reconciled": {
                "shared": get(&c.reconciled_shared), "ours": get(&c.reconciled_ours),
                "double_applied": get(&c.double_applied), "contradiction": get(&c.reconciled_contradiction),
                "dropped": get(&c.dropped),
            },
            "outcomes": { "forwarded": get(&c.forwarded), "applied": get(&c.inbox_applied), "unreadable": get(&c.inbox_bad) },
            "lease_refreshes": get(&c.refreshes),
            "aggregate_events": {
                "sent": get(&c.counts_sent), "taken": get(&c.counts_taken),
                "unreadable": get(&c.counts_bad), "dropped": get(&c.counts_dropped),
            },
            "campaign_leases_set": get(&c.leases),
        })
    }

    /// Prometheus text.
    pub fn render(&self, out: &mut String) {
        let c = &self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let calls = &self.redis.calls;
        let _ = writeln!(
            out,
            "# HELP ctrbid_fleet_redis_calls_total Calls to Redis by outcome (refused: the breaker was open).\n\
             # TYPE ctrbid_fleet_redis_calls_total counter\n\
             ctrbid_fleet_redis_calls_total{{result=\"ok\"}} {}\n\
             ctrbid_fleet_redis_calls_total{{result=\"error\"}} {}\n\
             ctrbid_fleet_redis_calls_total{{result=\"timeout\"}} {}\n\
             ctrbid_fleet_redis_calls_total{{result=\"refused\"}} {}\n\
             # HELP ctrbid_fleet_breaker_open 1 while the circuit breaker in front of Redis is open.\n\
             # TYPE ctrbid_fleet_breaker_open gauge\nctrbid_fleet_breaker_open {}\n\
             # HELP ctrbid_fleet_breaker_opened_total Times the breaker opened.\n\
             # TYPE ctrbid_fleet_breaker_opened_total counter\nctrbid_fleet_breaker_opened_total {}\n\
             # HELP ctrbid_fleet_notice_claims_total Notices this instance accepted, by the fleet ledger's answer.\n\
             # TYPE ctrbid_fleet_notice_claims_total counter\n\
             ctrbid_fleet_notice_claims_total{{result=\"new\"}} {}\n\
             ctrbid_fleet_notice_claims_total{{result=\"duplicate\"}} {}\n\
             ctrbid_fleet_notice_claims_total{{result=\"contradiction\"}} {}\n\
             ctrbid_fleet_notice_claims_total{{result=\"unshared\"}} {}\n\
             # HELP ctrbid_fleet_unshared_notices Notices accepted while Redis was away, not yet claimed in the fleet's ledger.\n\
             # TYPE ctrbid_fleet_unshared_notices gauge\nctrbid_fleet_unshared_notices {}\n\
             # HELP ctrbid_fleet_reconciled_total Notices claimed after an outage, by outcome.\n\
             # TYPE ctrbid_fleet_reconciled_total counter\n\
             ctrbid_fleet_reconciled_total{{result=\"shared\"}} {}\n\
             ctrbid_fleet_reconciled_total{{result=\"ours\"}} {}\n\
             ctrbid_fleet_reconciled_total{{result=\"double_applied\"}} {}\n\
             ctrbid_fleet_reconciled_total{{result=\"contradiction\"}} {}\n\
             ctrbid_fleet_reconciled_total{{result=\"dropped\"}} {}\n\
             # HELP ctrbid_fleet_outcomes_total Win, billing and loss outcomes of bids made by another instance sent to it, and of this instance's bids taken from its inbox.\n\
             # TYPE ctrbid_fleet_outcomes_total counter\n\
             ctrbid_fleet_outcomes_total{{direction=\"forwarded\"}} {}\n\
             ctrbid_fleet_outcomes_total{{direction=\"applied\"}} {}\n\
             ctrbid_fleet_outcomes_total{{direction=\"unreadable\"}} {}\n\
             # HELP ctrbid_fleet_lease_refreshes_total Budget lease refreshes Redis answered.\n\
             # TYPE ctrbid_fleet_lease_refreshes_total counter\nctrbid_fleet_lease_refreshes_total {}\n\
             # HELP ctrbid_fleet_campaign_leases_total Campaign leases those refreshes set.\n\
             # TYPE ctrbid_fleet_campaign_leases_total counter\nctrbid_fleet_campaign_leases_total {}\n\
             # HELP ctrbid_fleet_aggregate_events_total Impressions, clicks and conversions counted here and sent to the other instances, taken from them, unreadable, or dropped from a full outbox.\n\
             # TYPE ctrbid_fleet_aggregate_events_total counter\n\
             ctrbid_fleet_aggregate_events_total{{direction=\"sent\"}} {}\n\
             ctrbid_fleet_aggregate_events_total{{direction=\"taken\"}} {}\n\
             ctrbid_fleet_aggregate_events_total{{direction=\"unreadable\"}} {}\n\
             ctrbid_fleet_aggregate_events_total{{direction=\"dropped\"}} {}",
            get(&calls.ok),
            get(&calls.error),
            get(&calls.timeout),
            get(&calls.refused),
            u8::from(self.redis.breaker.is_open()),
            get(&self.redis.breaker.opened),
            get(&c.new),
            get(&c.duplicate),
            get(&c.contradiction),
            get(&c.unshared),
            self.unshared(),
            get(&c.reconciled_shared),
            get(&c.reconciled_ours),
            get(&c.double_applied),
            get(&c.reconciled_contradiction),
            get(&c.dropped),
            get(&c.forwarded),
            get(&c.inbox_applied),
            get(&c.inbox_bad),
            get(&c.refreshes),
            get(&c.leases),
            get(&c.counts_sent),
            get(&c.counts_taken),
            get(&c.counts_bad),
            get(&c.counts_dropped),
        );
    }
}
