//! The score cache: a feature row's scores, remembered for a short while.
//!
//! The same impression comes back: offered again by another exchange or SSP (header
//! bidding sends one impression through several), or on a page reload. Its candidates'
//! feature rows are then the same numbers, and so are their scores. The cache maps a
//! row's 128-bit hash (xxh3-128 of its categorical indices and numeric values: the
//! model's whole input) to the pCTR and pCVR the model gave it, so a repeated row skips
//! inference. [`ScoreCache::score`] looks every row of a request up, sends only the
//! misses to the batcher, and answers the same [`Scores`] the batcher would have.
//!
//! It is a fixed table, not a `DashMap`: sets of two 32-byte slots (one cache line),
//! allocated and touched once at start, read and written without locks (a sequence
//! number per slot, as a seqlock). A first version kept two rotating `DashMap` segments;
//! under load it cost 23 % more CPU per request on traffic without repeats (random keys
//! in locked shards, a fresh segment's page faults, whole segments freed on a worker),
//! more than it saved with 30 % repeats (`make loadtest-cache`, loadtest/README.md).
//!
//! Invariants:
//! - An entry answers only for the model generation that computed it
//!   ([`Batcher::generation`]): after a model reload every older entry is a miss.
//! - An entry older than `ttl` is a miss.
//! - At most `max_entries` entries (rounded up to a power of two): a key can live only in
//!   the two slots of its set; a new key takes an empty, expired or stale slot, else the
//!   one written longer ago (a hit does not refresh it).
//! - A slot's `head` holds its sequence number (odd while a writer fills it; 0 never
//!   written), the entry's generation (16 bits: equal only within 65,536 reloads) and its
//!   write time. A reader that sees the sequence number change while reading takes a
//!   miss; a writer that finds a slot being written skips the insert.
//! - `pcvr` is stored as NaN for a model without a conversion head (the heads of an
//!   entry follow from it; one generation has one set of heads).
//! - Two different rows share a key with probability about n² / 2¹²⁹: never in practice,
//!   and the cost of it would be one bid priced with another row's scores.

use super::batcher::{Batcher, Rows, ScoreError, Scores};
use super::model::Heads;
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

/// Slots per set: a key lives in one of two neighbouring slots (one 64-byte line).
const WAYS: usize = 2;

/// Size and lifetime of the cache; see `config::ScoringConfig`.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    pub max_entries: usize,
    pub ttl: Duration,
}

/// One entry: see the module's invariants for `head`.
#[derive(Default)]
struct Slot {
    head: AtomicU64,
    key_lo: AtomicU64,
    key_hi: AtomicU64,
    /// pCTR's bits, and pCVR's in the upper half.
    value: AtomicU64,
}

#[derive(Default)]
#[repr(C, align(64))]
struct Set {
    slots: [Slot; WAYS],
}

/// `head`'s fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    seq: u16,
    generation: u16,
    stored_ms: u32,
}

impl Head {
    fn unpack(h: u64) -> Head {
        Head { seq: h as u16, generation: (h >> 16) as u16, stored_ms: (h >> 32) as u32 }
    }

    fn pack(self) -> u64 {
        u64::from(self.seq) | u64::from(self.generation) << 16 | u64::from(self.stored_ms) << 32
    }

    fn written(self) -> bool {
        self.seq != 0 && self.seq.is_multiple_of(2)
    }

    fn live(self, generation: u16, now_ms: u32, ttl_ms: u32) -> bool {
        self.written() && self.generation == generation && now_ms.wrapping_sub(self.stored_ms) < ttl_ms
    }
}

/// Counters since start, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Live entries of another row overwritten by a new one.
    pub evictions: u64,
    /// Slots ever written (at most `capacity`).
    pub filled: usize,
    pub capacity: usize,
}

pub struct ScoreCache {
    sets: Box<[Set]>,
    /// `sets.len() - 1`; the length is a power of two.
    mask: usize,
    ttl_ms: u32,
    epoch: Instant,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    filled: AtomicUsize,
}

impl std::fmt::Debug for ScoreCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoreCache").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

/// A remembered row's scores.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    pctr: f32,
    /// NaN for a model without a conversion head.
    pcvr: f32,
}

impl Entry {
    fn unpack(v: u64) -> Entry {
        Entry { pctr: f32::from_bits(v as u32), pcvr: f32::from_bits((v >> 32) as u32) }
    }

    fn pack(self) -> u64 {
        u64::from(self.pctr.to_bits()) | u64::from(self.pcvr.to_bits()) << 32
    }
}

/// The keys of every row of `rows`.
fn row_keys(rows: &Rows) -> Vec<u128> {
    if rows.n == 0 {
        return Vec::new();
    }
    let (f, d) = (rows.cat.len() / rows.n, rows.num.len() / rows.n);
    (0..rows.n).map(|r| row_key(&rows.cat[r * f..(r + 1) * f], &rows.num[r * d..(r + 1) * d])).collect()
}

/// Loads the first word of every key's set, so the cache lines come in together: the
/// loads do not depend on each other, and the CPU overlaps their trips to memory. (Keys
/// are random and the table is megabytes: looked up one by one, each set would wait for
/// memory in turn. A prefetch instruction would need `unsafe`.)
fn touch_sets(cache: &ScoreCache, keys: impl Iterator<Item = u128>) {
    let sum = keys.fold(0u64, |acc, key| acc.wrapping_add(cache.set(key).slots[0].head.load(Ordering::Relaxed)));
    std::hint::black_box(sum);
}

/// Bytes of a row hashed in one call from the stack; wider rows stream (same hash).
const KEY_STACK_BYTES: usize = 512;

/// The cache key of one row: its categorical indices then numeric values, little-endian,
/// hashed with xxh3-128.
pub fn row_key(cat: &[i64], num: &[f32]) -> u128 {
    let len = cat.len() * 8 + num.len() * 4;
    if len <= KEY_STACK_BYTES {
        let mut buf = [0u8; KEY_STACK_BYTES];
        let (cat_bytes, num_bytes) = buf[..len].split_at_mut(cat.len() * 8);
        for (chunk, v) in cat_bytes.chunks_exact_mut(8).zip(cat) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        for (chunk, v) in num_bytes.chunks_exact_mut(4).zip(num) {
            chunk.copy_from_slice(&v.to_bits().to_le_bytes());
        }
        return xxh3_128(&buf[..len]);
    }
    let mut hasher = Xxh3::new();
    for v in cat {
        hasher.update(&v.to_le_bytes());
    }
    for v in num {
        hasher.update(&v.to_bits().to_le_bytes());
    }
    hasher.digest128()
}

impl ScoreCache {
    /// An empty cache of `max_entries` (rounded up to a power of two, at least 2), all
    /// its memory allocated and touched now.
    pub fn new(cfg: CacheConfig) -> ScoreCache {
        let sets = (cfg.max_entries.max(WAYS) / WAYS).next_power_of_two();
        let ttl_ms = u32::try_from(cfg.ttl.as_millis()).unwrap_or(u32::MAX / 2).clamp(1, u32::MAX / 2);
        ScoreCache {
            sets: (0..sets).map(|_| Set::default()).collect(),
            mask: sets - 1,
            ttl_ms,
            epoch: Instant::now(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            filled: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u32 {
        self.epoch.elapsed().as_millis() as u32
    }

    /// Scores `rows` as [`Batcher::score`] does, scoring only the rows the cache has no
    /// live entry for, and remembering what the batcher answers.
    pub async fn score(&self, batcher: &Batcher, rows: Rows, deadline: Instant) -> Result<Scores, ScoreError> {
        let n = rows.n;
        if n == 0 {
            return batcher.score(rows, deadline).await;
        }
        let (f, d) = (rows.cat.len() / n, rows.num.len() / n);
        let generation = batcher.generation();
        let keys = row_keys(&rows);
        let found = self.get_all(&keys, generation);
        let hits = found.iter().flatten().count();

        if hits == 0 {
            let scores = batcher.score(rows, deadline).await?;
            self.store(keys.iter().copied(), &scores);
            return Ok(scores);
        }
        if hits == n {
            let heads = if found[0].is_some_and(|e| e.pcvr.is_nan()) { Heads::Pctr } else { Heads::PctrPcvr };
            let mut scores = Scores::with_capacity(heads, n, generation);
            for e in found.iter().flatten() {
                scores.push(e.pctr, e.pcvr);
            }
            return Ok(scores);
        }

        let misses = n - hits;
        let mut missing = Rows::with_capacity(misses, f, d);
        for (r, _) in found.iter().enumerate().filter(|(_, e)| e.is_none()) {
            missing.cat.extend_from_slice(&rows.cat[r * f..(r + 1) * f]);
            missing.num.extend_from_slice(&rows.num[r * d..(r + 1) * d]);
        }
        let part = batcher.score(missing, deadline).await?;
        self.store(keys.iter().zip(&found).filter(|(_, e)| e.is_none()).map(|(k, _)| *k), &part);
        if part.generation() != generation {
            // A model reload between the lookup and the scoring: the hits are another
            // model's. Score every row with the one serving now.
            let all = batcher.score(rows, deadline).await?;
            self.store(keys.iter().copied(), &all);
            return Ok(all);
        }
        let mut scores = Scores::with_capacity(part.heads(), n, generation).scored_on(part.path());
        let mut j = 0;
        for e in &found {
            match e {
                Some(e) => scores.push(e.pctr, e.pcvr),
                None => {
                    scores.push(part.pctr(j), part.pcvr(j).unwrap_or(f32::NAN));
                    j += 1;
                }
            }
        }
        Ok(scores)
    }

    fn set(&self, key: u128) -> &Set {
        &self.sets[key as usize & self.mask]
    }

    /// The live entries of `keys` for model `generation`, counted as hits and misses.
    fn get_all(&self, keys: &[u128], generation: u32) -> Vec<Option<Entry>> {
        touch_sets(self, keys.iter().copied());
        let now_ms = self.now_ms();
        let found: Vec<Option<Entry>> = keys.iter().map(|&k| self.get(k, generation, now_ms)).collect();
        let hits = found.iter().flatten().count();
        self.hits.fetch_add(hits as u64, Ordering::Relaxed);
        self.misses.fetch_add((keys.len() - hits) as u64, Ordering::Relaxed);
        found
    }

    /// How many of `rows` the cache would answer for model `generation` (counted as
    /// lookups). For benches: [`ScoreCache::score`] is the bid path's way in.
    pub fn hits(&self, rows: &Rows, generation: u32) -> usize {
        self.get_all(&row_keys(rows), generation).iter().flatten().count()
    }

    /// Remembers `scores` as the scores of `rows`. For benches and tests.
    pub fn remember(&self, rows: &Rows, scores: &Scores) {
        self.store(row_keys(rows).into_iter(), scores);
    }

    /// The live entry of `key` for model `generation`, if any.
    fn get(&self, key: u128, generation: u32, now_ms: u32) -> Option<Entry> {
        let (lo, hi) = (key as u64, (key >> 64) as u64);
        for slot in &self.set(key).slots {
            let before = slot.head.load(Ordering::Acquire);
            let head = Head::unpack(before);
            if !head.live(generation as u16, now_ms, self.ttl_ms) {
                continue;
            }
            let (k_lo, k_hi, value) = (
                slot.key_lo.load(Ordering::Relaxed),
                slot.key_hi.load(Ordering::Relaxed),
                slot.value.load(Ordering::Relaxed),
            );
            fence(Ordering::Acquire);
            if slot.head.load(Ordering::Relaxed) != before {
                continue; // rewritten while read
            }
            if (k_lo, k_hi) == (lo, hi) {
                return Some(Entry::unpack(value));
            }
        }
        None
    }

    /// Remembers every row of `scores` under `keys` (one key per row, in order).
    fn store(&self, keys: impl Iterator<Item = u128> + Clone, scores: &Scores) {
        touch_sets(self, keys.clone());
        let now_ms = self.now_ms();
        let generation = scores.generation() as u16;
        for (r, key) in keys.enumerate() {
            let entry = Entry { pctr: scores.pctr(r), pcvr: scores.pcvr(r).unwrap_or(f32::NAN) };
            self.put(key, entry, generation, now_ms);
        }
    }

    fn put(&self, key: u128, entry: Entry, generation: u16, now_ms: u32) {
        let (lo, hi) = (key as u64, (key >> 64) as u64);
        let slots = &self.set(key).slots;
        // The slot to write: this key's own, else a free one, else the one written longer ago.
        let heads = slots.each_ref().map(|s| Head::unpack(s.head.load(Ordering::Relaxed)));
        let same_key = |s: &Slot| s.key_lo.load(Ordering::Relaxed) == lo && s.key_hi.load(Ordering::Relaxed) == hi;
        let free = |h: Head| !h.live(generation, now_ms, self.ttl_ms);
        let way = (0..WAYS)
            .find(|&w| heads[w].written() && same_key(&slots[w]))
            .or_else(|| (0..WAYS).find(|&w| free(heads[w])))
            .unwrap_or_else(|| (0..WAYS).max_by_key(|&w| now_ms.wrapping_sub(heads[w].stored_ms)).unwrap_or(0));
        let (slot, head) = (&slots[way], heads[way]);
        if !head.seq.is_multiple_of(2) {
            return; // another writer is filling it
        }
        let writing = Head { seq: head.seq.wrapping_add(1), ..head };
        if slot.head.compare_exchange(head.pack(), writing.pack(), Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return; // changed since read: let that write stand
        }
        fence(Ordering::Release);
        if !head.written() {
            self.filled.fetch_add(1, Ordering::Relaxed);
        } else if !free(head) && !same_key(slot) {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        slot.key_lo.store(lo, Ordering::Relaxed);
        slot.key_hi.store(hi, Ordering::Relaxed);
        slot.value.store(entry.pack(), Ordering::Relaxed);
        // Never back to 0 ("never written") when the sequence number wraps.
        let seq = match writing.seq.wrapping_add(1) {
            0 => 2,
            s => s,
        };
        slot.head.store(Head { seq, generation, stored_ms: now_ms }.pack(), Ordering::Release);
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            filled: self.filled.load(Ordering::Relaxed),
            capacity: self.sets.len() * WAYS,
        }
    }

    /// Prometheus text for the cache.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let s = self.stats();
        let _ = write!(
            out,
            "# HELP ctrbid_score_cache_lookups_total Score cache lookups, one per candidate row.\n\
             # TYPE ctrbid_score_cache_lookups_total counter\n\
             ctrbid_score_cache_lookups_total{{result=\"hit\"}} {}\n\
             ctrbid_score_cache_lookups_total{{result=\"miss\"}} {}\n\
             # HELP ctrbid_score_cache_evictions_total Live entries overwritten by another row's.\n\
             # TYPE ctrbid_score_cache_evictions_total counter\n\
             ctrbid_score_cache_evictions_total {}\n\
             # HELP ctrbid_score_cache_filled Slots of the score cache ever written.\n\
             # TYPE ctrbid_score_cache_filled gauge\n\
             ctrbid_score_cache_filled {}\n\
             # HELP ctrbid_score_cache_capacity Slots of the score cache.\n\
             # TYPE ctrbid_score_cache_capacity gauge\n\
             ctrbid_score_cache_capacity {}\n",
            s.hits, s.misses, s.evictions, s.filled, s.capacity
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_entries: usize, ttl_ms: u64) -> ScoreCache {
        ScoreCache::new(CacheConfig { max_entries, ttl: Duration::from_millis(ttl_ms) })
    }

    fn entry(pctr: f32) -> Entry {
        Entry { pctr, pcvr: f32::NAN }
    }

    fn get(c: &ScoreCache, key: u128, generation: u32, now_ms: u32) -> Option<f32> {
        c.get(key, generation, now_ms).map(|e| e.pctr)
    }

    /// The `i`-th key of set `set` (all share it).
    fn key_in(c: &ScoreCache, set: usize, i: u64) -> u128 {
        (u128::from(i) << 64) | ((u128::from(i) << 20) & !(c.mask as u128)) | set as u128
    }

    #[test]
    fn a_row_key_covers_every_input_value() {
        let (cat, num) = ([3i64, 70, 1 << 40], [0.5f32, -1.0]);
        let key = row_key(&cat, &num);
        assert_eq!(key, row_key(&cat, &num));
        for i in 0..cat.len() {
            let mut c = cat;
            c[i] += 1;
            assert_ne!(key, row_key(&c, &num), "cat {i}");
        }
        for i in 0..num.len() {
            let mut n = num;
            n[i] = f32::from_bits(n[i].to_bits() ^ 1);
            assert_ne!(key, row_key(&cat, &n), "num {i}");
        }
        // A row wider than the stack buffer streams through the hasher: the same hash as
        // one call over its bytes.
        let (wide_cat, wide_num) = (vec![9i64; 100], vec![0.25f32; 20]);
        let bytes: Vec<u8> = wide_cat
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .chain(wide_num.iter().flat_map(|v| v.to_bits().to_le_bytes()))
            .collect();
        assert_eq!(row_key(&wide_cat, &wide_num), xxh3_128(&bytes));
        assert_ne!(row_key(&wide_cat, &wide_num), row_key(&wide_cat[..99], &wide_num));
    }

    #[test]
    fn an_entry_answers_its_own_generation_within_its_lifetime() {
        let c = cache(100, 1_000);
        c.put(1, Entry { pctr: 0.25, pcvr: 0.5 }, 3, 10);
        assert_eq!(c.get(1, 3, 10), Some(Entry { pctr: 0.25, pcvr: 0.5 }));
        assert_eq!(get(&c, 1, 3, 1_009), Some(0.25));
        assert_eq!(get(&c, 1, 3, 1_010), None, "expired");
        assert_eq!(get(&c, 1, 4, 500), None, "another model");
        assert_eq!(get(&c, 2, 3, 500), None, "another row");
        assert_eq!(get(&c, 1 | 1 << 64, 3, 500), None, "another row in the same set");
        // Rewritten: the new value.
        c.put(1, entry(0.75), 3, 20);
        assert_eq!(get(&c, 1, 3, 20), Some(0.75));
        assert_eq!(c.stats().filled, 1, "the same slot");
    }

    #[test]
    fn a_full_set_gives_up_the_slot_written_longer_ago() {
        let c = cache(1_024, 60_000);
        assert_eq!(c.stats().capacity, 1_024);
        let (a, b, new) = (key_in(&c, 7, 1), key_in(&c, 7, 2), key_in(&c, 7, 3));
        c.put(a, entry(0.1), 0, 100);
        c.put(b, entry(0.2), 0, 200);
        c.put(new, entry(0.3), 0, 300);
        assert_eq!((get(&c, a, 0, 300), get(&c, b, 0, 300), get(&c, new, 0, 300)), (None, Some(0.2), Some(0.3)));
        assert_eq!(c.stats().evictions, 1);
        // An expired or stale entry is taken before a live one, and that is no eviction.
        let c = cache(1_024, 1_000);
        c.put(a, entry(0.1), 0, 100);
        c.put(b, entry(0.2), 0, 1_050);
        c.put(new, entry(0.3), 0, 1_200);
        assert_eq!((get(&c, b, 0, 1_200), get(&c, new, 0, 1_200)), (Some(0.2), Some(0.3)), "a had expired");
        assert_eq!(c.stats().evictions, 0);
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let c = cache(1_000, 60_000);
        assert_eq!(c.stats().capacity, 1_024, "rounded up to a power of two");
        for k in 0..50_000u128 {
            c.put(row_key(&[k as i64], &[]), entry(0.1), 0, 0);
        }
        let s = c.stats();
        assert_eq!(s.filled, 1_024, "{s:?}");
        assert_eq!(s.evictions, 50_000 - 1_024, "{s:?}");
        let kept = (0..50_000u128).filter(|&k| get(&c, row_key(&[k as i64], &[]), 0, 0).is_some()).count();
        assert_eq!(kept, 1_024);
    }

    /// Readers never see a torn entry: while writers keep rewriting keys of one set, each
    /// with a value that is a function of its key, every hit carries its key's value.
    #[test]
    fn concurrent_writers_and_readers_see_whole_entries() {
        use std::sync::atomic::AtomicBool;
        let c = cache(2, 60_000);
        let value = |k: u128| (k as u32 % 1_000) as f32;
        let writing = AtomicBool::new(true);
        let mut hits = 0u64;
        std::thread::scope(|s| {
            let writers: Vec<_> = (0..2u128)
                .map(|t| {
                    let c = &c;
                    s.spawn(move || {
                        for i in 0..200_000u128 {
                            let k = (i % 8) * 2 + t;
                            c.put(k << 64 | k, entry(value(k)), 0, 0);
                        }
                    })
                })
                .collect();
            let c = &c;
            let writing = &writing;
            s.spawn(move || {
                for w in writers {
                    w.join().unwrap();
                }
                writing.store(false, Ordering::Release);
            });
            // Read until the writers are done, then once more over every key.
            let mut i = 0u128;
            loop {
                let done = !writing.load(Ordering::Acquire);
                for k in 0..16u128 {
                    if let Some(p) = get(c, k << 64 | k, 0, 0) {
                        assert_eq!(p, value(k), "key {k} after {i} reads");
                        hits += 1;
                    }
                    i += 1;
                }
                if done {
                    break;
                }
            }
        });
        assert!(hits > 0, "the last two keys written are there");
    }
}
