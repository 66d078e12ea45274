//! The aggregate store (`cargo bench --bench aggregates`): what the bid path pays to read
//! one request's aggregates, and what a notice pays to update them, on the fixed table
//! ([`AggregateStore`]) against a `DashMap<u64, Counts>` holding the same entities.
//!
//! The store holds 200,000 users with 3 ad categories each, 1,000 campaigns, 3,000
//! creatives, 500 publishers and the publisher x campaign pairs they make (about 600,000
//! entities in a 2^21-way table); the measured request's user and publisher change every
//! iteration, so the lookups are not all cache-hot.
//!
//! - `aggregates/read_request/{table,dashmap}`: the request's user and publisher and, for
//!   each of 50 candidates, its campaign, creative, publisher x campaign and user x ad
//!   category: 202 keys hashed, looked up and decayed to the auction's time (on the table
//!   inside one [`AggregateStore::read`], the consistent snapshot).
//! - `aggregates/apply/{table,dashmap}`: one impression's six entities updated.
//!
//! Before the timings it prints the bytes per entity of each (the table's slots over the
//! entities it holds; the map's heap, by a counting allocator, over its entities).

use criterion::{BenchmarkId, Criterion, Throughput};
use ctrbid::aggregates::{family_key, id_hash, AggEvent, AggregateStore, Counts, EntityKeys, Family, Outcome};
use dashmap::DashMap;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::hint::black_box;
use std::time::Duration;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const T: i64 = 1_780_000_000;
const USERS: u64 = 200_000;
const CATEGORIES: u64 = 3;
const CAMPAIGNS: u64 = 1_000;
const CREATIVES_PER_CAMPAIGN: u64 = 3;
const PUBLISHERS: u64 = 500;
const CANDIDATES: u64 = 50;

fn keys_of(user: u64, publisher: u64, campaign: u64) -> EntityKeys {
    EntityKeys {
        user: Some(id_hash(&format!("user-{user}"))),
        publisher: Some(id_hash(&format!("pub-{publisher}"))),
        campaign: id_hash(&format!("cmp-{campaign}")),
        creative: id_hash(&format!("cr-{campaign}-{}", user % CREATIVES_PER_CAMPAIGN)),
        ad_category: id_hash(&format!("IAB{}", campaign % 26)),
    }
}

/// The events that fill the store: every user sees 3 campaigns (3 categories), on
/// publishers and creatives spread so that every family is populated.
fn events() -> Vec<AggEvent> {
    let mut out = Vec::with_capacity((USERS * CATEGORIES) as usize);
    for user in 0..USERS {
        for k in 0..CATEGORIES {
            let campaign = (user * 7 + k * 13) % CAMPAIGNS;
            let publisher = (user + k * 101) % PUBLISHERS;
            let outcome = if (user + k) % 50 == 0 { Outcome::Click } else { Outcome::Impression };
            out.push(AggEvent {
                ts_s: T - 3_600 + (user % 3_600) as i64,
                outcome,
                keys: keys_of(user, publisher, campaign),
            });
        }
    }
    out
}

/// A request's hashed ids: its user and publisher, and its candidates' campaigns,
/// creatives and categories.
struct Request {
    user: u64,
    publisher: u64,
    candidates: Vec<(u64, u64, u64)>,
}

fn requests(n: u64) -> Vec<Request> {
    (0..n)
        .map(|i| {
            let user = (i * 7_919) % USERS;
            let publisher = (i * 31) % PUBLISHERS;
            let candidates = (0..CANDIDATES)
                .map(|c| {
                    let campaign = (i * 17 + c * 19) % CAMPAIGNS;
                    let k = keys_of(user, publisher, campaign);
                    (k.campaign, k.creative, k.ad_category)
                })
                .collect();
            Request {
                user: id_hash(&format!("user-{user}")),
                publisher: id_hash(&format!("pub-{publisher}")),
                candidates,
            }
        })
        .collect()
}

/// The 202 keys of a request, each handed to `look` (the sum keeps the work live).
fn request_keys(r: &Request, mut look: impl FnMut(u64) -> f32) -> f32 {
    let mut sum = look(family_key(Family::User, r.user, 0)) + look(family_key(Family::Publisher, r.publisher, 0));
    for &(campaign, creative, category) in &r.candidates {
        sum += look(family_key(Family::Campaign, campaign, 0));
        sum += look(family_key(Family::Creative, creative, 0));
        sum += look(family_key(Family::PublisherCampaign, r.publisher, campaign));
        sum += look(family_key(Family::UserAdCategory, r.user, category));
    }
    sum
}

fn value(c: Option<Counts>) -> f32 {
    c.map_or(0.0, |c| {
        let c = c.at(T);
        c.clicks[1] / (c.impressions[1] + 1.0)
    })
}

fn update(map: &DashMap<u64, Counts>, e: &AggEvent) {
    for f in Family::ALL {
        if let Some(key) = e.keys.key(f) {
            let mut c = map.entry(key).or_default();
            // The same arithmetic as the table's (decay to the event, add one).
            let mut d = c.at(e.ts_s);
            if d.updated_s == 0 {
                d.updated_s = e.ts_s as u32;
            }
            match e.outcome {
                Outcome::Impression => d.impressions.iter_mut().for_each(|x| *x += 1.0),
                Outcome::Click => d.clicks.iter_mut().for_each(|x| *x += 1.0),
                Outcome::Conversion => d.conversions.iter_mut().for_each(|x| *x += 1.0),
            }
            *c = d;
        }
    }
}

fn main() {
    let events = events();
    let table = AggregateStore::new(1 << 21);
    for e in &events {
        table.apply(e);
    }
    let stats = table.stats();
    let region = Region::new(GLOBAL);
    let map: DashMap<u64, Counts> = DashMap::new();
    for e in &events {
        update(&map, e);
    }
    let map_heap = region.change().bytes_allocated as f64 - region.change().bytes_deallocated as f64;
    println!(
        "aggregates: {} entities; table {} ways x 64 B = {:.1} MB, {:.1} B per entity ({} evicted); \
         DashMap {} entities, {:.1} B per entity of heap",
        stats.entries,
        stats.capacity,
        table.bytes() as f64 / 1e6,
        table.bytes() as f64 / stats.entries as f64,
        stats.evicted,
        map.len(),
        map_heap / map.len() as f64,
    );
    let reqs = requests(4_096);

    let mut c = Criterion::default().configure_from_args().measurement_time(Duration::from_secs(5));
    {
        let mut g = c.benchmark_group("aggregates/read_request");
        g.throughput(Throughput::Elements(1));
        let mut i = 0usize;
        g.bench_function(BenchmarkId::from_parameter("table"), |b| {
            b.iter(|| {
                i = (i + 1) % reqs.len();
                let r = &reqs[i];
                black_box(table.read(|s| request_keys(r, |k| value(s.counts(k)))))
            })
        });
        let mut i = 0usize;
        g.bench_function(BenchmarkId::from_parameter("dashmap"), |b| {
            b.iter(|| {
                i = (i + 1) % reqs.len();
                let r = &reqs[i];
                black_box(request_keys(r, |k| value(map.get(&k).map(|c| *c))))
            })
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("aggregates/apply");
        g.throughput(Throughput::Elements(1));
        let mut i = 0usize;
        g.bench_function(BenchmarkId::from_parameter("table"), |b| {
            b.iter(|| {
                i = (i + 1) % events.len();
                black_box(table.apply(&events[i]))
            })
        });
        let mut i = 0usize;
        g.bench_function(BenchmarkId::from_parameter("dashmap"), |b| {
            b.iter(|| {
                i = (i + 1) % events.len();
                update(&map, &events[i]);
            })
        });
        g.finish();
    }
    c.final_summary();
}
