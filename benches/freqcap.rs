//! Frequency caps (`cargo bench --bench freqcap`), on a store of 100,000 users, the
//! measured user changing every iteration (so the lookups are not all cache-hot).
//!
//! `freqcap/bid_path`: what the bid path pays per request: one [`CapStore::user`]
//! lookup and 50 candidates' `allows` checks (each candidate a distinct capped
//! campaign), for a user with 3 of the candidates' items (2 impressions each and a
//! reservation), a tracked user with none of them (3 other items), and an unknown user.
//! Baselines in the group: `no_store`, the same 50-candidate loop reading each cap with
//! no store at all (the floor), and `lookup_per_candidate`, 50 [`CapStore::allows`]
//! calls (one lookup each: what the view saves). The `_hot` cases ask about the same
//! user every time: the difference from their rotating twins is cache misses on the
//! 15 MB table. Throughput in requests/s.
//!
//! `freqcap/notices`: a reservation and its win (`reserve_won`) and a reservation and its
//! loss (`reserve_lost`), against `lookup_only` (one read lookup); each user's window
//! has slid past its last impression by the time it comes round again, and the sweep
//! that runs between rounds is not timed.
//!
//! `freqcap/map`: the map itself, `DashMap` against the alternative it was chosen over,
//! 64 `std::sync::RwLock<HashMap>` shards with the same hasher (pingora-limits' bench
//! compares `Mutex<HashMap>` with `DashMap` the same way): a read and an update of a
//! 96-byte value, on one thread and on every core at once.
//!
//! Before the timings it prints the bytes per tracked user (a counting allocator around
//! filling the store with 100,000 users of 2 items x 3 impressions) and checks that the
//! bid path and a reservation and win for a tracked user allocate nothing.

use criterion::{BenchmarkId, Criterion, Throughput};
use ctrbid::freqcap::{campaign_item, CapStore, FrequencyCap};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::hint::black_box;
use std::sync::RwLock;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const T: i64 = 1_780_000_000;
const USERS: u64 = 100_000;
const CANDIDATES: usize = 50;
const DAY: FrequencyCap = FrequencyCap { impressions: 3, window_s: 86_400 };

/// 50 candidates, each with its own capped campaign.
fn candidates() -> Vec<(u32, FrequencyCap)> {
    (0..CANDIDATES).map(|i| (campaign_item(&format!("campaign-{i}")), DAY)).collect()
}

/// `USERS` users (keys 1..=USERS), each with 2 impressions of each of `items` and one
/// reservation of the first, live until `T + 600`.
fn store(items: &[u32]) -> CapStore {
    let s = CapStore::new(2 * USERS as usize);
    for user in 1..=USERS {
        for (k, &item) in items.iter().enumerate() {
            s.won(user, item, 0, T - 100 + k as i64);
            s.won(user, item, 0, T - 50 + k as i64);
        }
        assert!(s.reserve(user, items[0], DAY, 1, T + 600, T));
    }
    s
}

/// The user of iteration `i`: all of them in turn, in an order that jumps around.
fn user_at(i: u64) -> u64 {
    (i.wrapping_mul(0x9E37_79B9) % USERS) + 1
}

fn bid_path(c: &mut Criterion) {
    let cands = candidates();
    let mine = store(&[cands[3].0, cands[17].0, cands[40].0]);
    let others: Vec<u32> = (0..3).map(|i| campaign_item(&format!("elsewhere-{i}"))).collect();
    let theirs = store(&others);
    let now = T + 60;

    let mut g = c.benchmark_group("freqcap/bid_path");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("no_store", |b| {
        b.iter(|| {
            i += 1;
            black_box(user_at(i));
            black_box(&cands).iter().filter(|(item, cap)| black_box(*item) != 0 && cap.impressions > 0).count()
        })
    });
    for (name, s, offset) in [("user_3_items", &mine, 0), ("user_0_items", &theirs, 0), ("unknown_user", &mine, USERS)]
    {
        g.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                let view = s.user(user_at(i) + offset);
                black_box(&cands).iter().filter(|(item, cap)| view.allows(*item, *cap, now)).count()
            })
        });
    }
    g.bench_function("user_0_items_hot", |b| {
        b.iter(|| {
            let view = theirs.user(black_box(5));
            black_box(&cands).iter().filter(|(item, cap)| view.allows(*item, *cap, now)).count()
        })
    });
    g.bench_function("user_3_items_hot", |b| {
        b.iter(|| {
            let view = mine.user(black_box(5));
            black_box(&cands).iter().filter(|(item, cap)| view.allows(*item, *cap, now)).count()
        })
    });
    g.bench_function("lookup_per_candidate", |b| {
        b.iter(|| {
            i += 1;
            let user = user_at(i);
            black_box(&cands).iter().filter(|(item, cap)| mine.allows(user, *item, *cap, now)).count()
        })
    });
    g.finish();
}

fn notices(c: &mut Criterion) {
    let item = campaign_item("campaign-0");
    let cap = FrequencyCap { impressions: 3, window_s: 60 };
    let mut g = c.benchmark_group("freqcap/notices");
    g.throughput(Throughput::Elements(1));
    for name in ["lookup_only", "reserve_won", "reserve_lost"] {
        let s = store(&[item]);
        let mut i = 0u64;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    // At most one round of users per timed stretch, then a new window.
                    let now = T + 61 * (1 + (i / USERS) as i64);
                    let n = left.min(USERS - i % USERS);
                    let start = Instant::now();
                    for _ in 0..n {
                        i += 1;
                        let user = user_at(i);
                        match name {
                            "lookup_only" => _ = black_box(s.user(user).is_tracked()),
                            _ => {
                                assert!(s.reserve(user, item, cap, i, now + 600, now));
                                if name == "reserve_won" {
                                    s.won(user, item, i, now);
                                } else {
                                    s.lost(user, item, i);
                                }
                            }
                        }
                    }
                    spent += start.elapsed();
                    left -= n;
                    if i.is_multiple_of(USERS) {
                        s.sweep(now + 61, 60);
                    }
                }
                spent
            })
        });
    }
    g.finish();
}

/// The alternative to `DashMap`: a fixed number of `RwLock<HashMap>` shards.
struct Sharded<V> {
    shards: Box<[RwLock<HashMap<u64, V>>]>,
    hasher: RandomState,
}

impl<V> Sharded<V> {
    fn new(n: usize) -> Sharded<V> {
        Sharded { shards: (0..n).map(|_| RwLock::new(HashMap::new())).collect(), hasher: RandomState::new() }
    }

    fn shard(&self, key: u64) -> &RwLock<HashMap<u64, V>> {
        &self.shards[(self.hasher.hash_one(key) >> 58) as usize % self.shards.len()]
    }
}

type Value = [u64; 12];

fn map(c: &mut Criterion) {
    let dash: dashmap::DashMap<u64, Value> = dashmap::DashMap::new();
    let rw: Sharded<Value> = Sharded::new(64);
    for k in 1..=USERS {
        dash.insert(k, [k; 12]);
        rw.shard(k).write().unwrap().insert(k, [k; 12]);
    }
    let dash_read = |k: u64| dash.get(&k).map_or(0, |v| v[3]);
    let dash_update = |k: u64| {
        if let Some(mut v) = dash.get_mut(&k) {
            v[3] = v[3].wrapping_add(1);
        }
    };
    let rw_read = |k: u64| rw.shard(k).read().unwrap().get(&k).map_or(0, |v| v[3]);
    let rw_update = |k: u64| {
        if let Some(v) = rw.shard(k).write().unwrap().get_mut(&k) {
            v[3] = v[3].wrapping_add(1);
        }
    };
    let threads = std::thread::available_parallelism().map_or(2, usize::from);

    let mut g = c.benchmark_group("freqcap/map");
    g.throughput(Throughput::Elements(1));
    let ops: [(&str, &(dyn Fn(u64) + Sync)); 4] = [
        ("dashmap_read", &|k| _ = black_box(dash_read(k))),
        ("rwlock_shards_read", &|k| _ = black_box(rw_read(k))),
        ("dashmap_update", &dash_update),
        ("rwlock_shards_update", &rw_update),
    ];
    for (name, op) in ops {
        let mut i = 0u64;
        g.bench_function(BenchmarkId::new(name, "1_thread"), |b| {
            b.iter(|| {
                i += 1;
                op(user_at(i))
            })
        });
        // Every core at once, each on its own stretch of keys; time per operation.
        g.bench_function(BenchmarkId::new(name, format!("{threads}_threads")), |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(threads as u64);
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for t in 0..threads as u64 {
                        scope.spawn(move || (0..per).for_each(|j| op(user_at(t * per + j))));
                    }
                });
                start.elapsed() / threads as u32
            })
        });
    }
    g.finish();
}

/// Bytes per tracked user, and no allocation on the bid path or for a tracked user's
/// reservation and win.
fn memory() {
    let item = |i: u32| campaign_item(&format!("campaign-{i}"));
    let items = [item(1), item(2)];
    let region = Region::new(GLOBAL);
    let s = CapStore::new(2 * USERS as usize);
    for user in 1..=USERS {
        for it in items {
            for k in 0..3 {
                assert!(s.reserve(user, it, DAY, k, T + 600, T));
                s.won(user, it, k, T + k as i64);
            }
        }
    }
    s.sweep(T + 10, 86_400);
    let change = region.change();
    let net = change.bytes_allocated - change.bytes_deallocated;
    let st = s.stats();
    println!(
        "freqcap/memory: {} users of 2 items x 3 impressions: {} bytes held ({} bytes per user; the store's own estimate {}), {} allocations",
        st.users,
        net,
        net / st.users,
        st.bytes_per_user,
        change.allocations,
    );

    let cands = candidates();
    let region = Region::new(GLOBAL);
    for user in 1..=1000 {
        let view = s.user(user);
        black_box(cands.iter().filter(|(it, cap)| view.allows(*it, *cap, T + 20)).count());
    }
    let change = region.change();
    assert_eq!((change.allocations, change.reallocations), (0, 0), "the bid path allocated");

    // Users with one impression: a reservation and its win fit in the entry.
    let (s, one) = (CapStore::new(2 * USERS as usize), item(1));
    for user in 1..=1000 {
        s.won(user, one, 0, T);
    }
    let region = Region::new(GLOBAL);
    for user in 1..=1000 {
        assert!(s.reserve(user, one, DAY, 9, T + 600, T + 20));
        s.won(user, one, 9, T + 21);
    }
    let change = region.change();
    assert_eq!((change.allocations, change.reallocations), (0, 0), "a reservation or a win allocated");
    println!("freqcap/memory: 1,000 lookups with 50 checks each, 1,000 reservations and wins: 0 allocations");
}

fn main() {
    memory();
    let mut c = Criterion::default().configure_from_args();
    bid_path(&mut c);
    notices(&mut c);
    map(&mut c);
    c.final_summary();
}
