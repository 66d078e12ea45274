//! The aggregate store: a fixed table of sets of [`WAYS`] entities (64 bytes each), written
//! by one event at a time and read without locks.
//!
//! Invariants:
//! - `seq` is twice the number of events applied, plus one while one is being applied
//!   (a sequence lock over the whole table). Every write happens while it is odd,
//!   under `writer`; a read that saw it odd, or saw it change, is retried, so a read sees
//!   the table after exactly `applied` events, never part of one.
//! - A key lives only in the set its low bits pick; a key the set does not hold takes an
//!   empty way, else the way with the fewest impressions at the longest half-life (the
//!   entity least seen lately; ties: the one updated longest ago). Reads never move or
//!   refresh anything, so the table is a function of the events and their order.
//! - A way's key is 0 when empty; its counters are all 0 and its times 0 then.

use super::{AggEvent, Family, Outcome, HALF_LIVES_S};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Mutex;

/// Ways per set: a key can live in any of its set's four.
const WAYS: usize = 4;
/// Counters per entity: impressions, clicks, conversions at each half-life.
const H: usize = HALF_LIVES_S.len();
/// Reads retried this many times while events are applied before one waits for the
/// writer instead (each event takes well under a microsecond to apply).
const OPTIMISTIC_READS: usize = 16;

/// One entity's counters, decayed to `updated_s`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counts {
    /// Unix seconds of the last event that moved the counters' time.
    pub updated_s: u32,
    /// Unix seconds of the latest click; 0 when none.
    pub last_click_s: u32,
    pub impressions: [f32; H],
    pub clicks: [f32; H],
    pub conversions: [f32; H],
}

/// `2^-(dt / h)`, the share of a count left after `dt` seconds at half-life `h`.
fn decay(dt: u32, h: u32) -> f64 {
    (-(f64::from(dt) / f64::from(h))).exp2()
}

fn clamp_s(ts_s: i64) -> u32 {
    ts_s.clamp(1, i64::from(u32::MAX)) as u32
}

impl Counts {
    /// The share of the counters at half-life index `h` left at `ts_s`: 1 at or before
    /// `updated_s` (and for counts never updated).
    pub fn decay_to(&self, ts_s: i64, h: usize) -> f64 {
        let t = clamp_s(ts_s);
        match t > self.updated_s && self.updated_s != 0 {
            true => decay(t - self.updated_s, HALF_LIVES_S[h]),
            false => 1.0,
        }
    }

    /// The counters as they read at `ts_s` (unchanged for a time at or before `updated_s`).
    pub fn at(&self, ts_s: i64) -> Counts {
        let t = clamp_s(ts_s);
        let mut c = *self;
        if t > c.updated_s && c.updated_s != 0 {
            for (i, &h) in HALF_LIVES_S.iter().enumerate() {
                let f = decay(t - c.updated_s, h);
                c.impressions[i] = (f64::from(c.impressions[i]) * f) as f32;
                c.clicks[i] = (f64::from(c.clicks[i]) * f) as f32;
                c.conversions[i] = (f64::from(c.conversions[i]) * f) as f32;
            }
            c.updated_s = t;
        }
        c
    }

    /// Adds one `outcome` at `ts_s`: see the module's decay rule.
    fn add(&mut self, ts_s: i64, outcome: Outcome) {
        let t = clamp_s(ts_s);
        if self.updated_s == 0 {
            self.updated_s = t;
        }
        if t >= self.updated_s {
            *self = self.at(ts_s);
        }
        let age = self.updated_s - t.min(self.updated_s);
        let counters = match outcome {
            Outcome::Impression => &mut self.impressions,
            Outcome::Click => &mut self.clicks,
            Outcome::Conversion => &mut self.conversions,
        };
        for (i, &h) in HALF_LIVES_S.iter().enumerate() {
            let share = if age == 0 { 1.0 } else { decay(age, h) };
            counters[i] = (f64::from(counters[i]) + share) as f32;
        }
        if outcome == Outcome::Click {
            self.last_click_s = self.last_click_s.max(t);
        }
    }

    /// The nine counters in slot order.
    fn values(&self) -> [f32; 3 * H] {
        let mut v = [0.0; 3 * H];
        v[..H].copy_from_slice(&self.impressions);
        v[H..2 * H].copy_from_slice(&self.clicks);
        v[2 * H..].copy_from_slice(&self.conversions);
        v
    }

    fn from_values(updated_s: u32, last_click_s: u32, v: &[f32; 3 * H]) -> Counts {
        let mut c = Counts { updated_s, last_click_s, ..Counts::default() };
        c.impressions.copy_from_slice(&v[..H]);
        c.clicks.copy_from_slice(&v[H..2 * H]);
        c.conversions.copy_from_slice(&v[2 * H..]);
        c
    }
}

/// Counter words per entity: two `f32` each.
const WORDS: usize = (3 * H).div_ceil(2);

/// Four ways of entities. The ways' keys and times share the first cache line, so a
/// lookup reads one line to find its way (or learn the key is absent) and then that
/// way's counters; 256 bytes, 64 per entity.
#[derive(Default)]
#[repr(C, align(64))]
struct Set {
    keys: [AtomicU64; WAYS],
    /// `updated_s` in the low half, `last_click_s` in the high half.
    times: [AtomicU64; WAYS],
    counters: [[AtomicU64; WORDS]; WAYS],
}

impl Set {
    fn find(&self, key: u64) -> Option<usize> {
        self.keys.iter().position(|k| k.load(Ordering::Relaxed) == key)
    }

    fn load(&self, way: usize) -> Counts {
        let times = self.times[way].load(Ordering::Relaxed);
        let mut v = [0.0f32; 3 * H];
        for (j, w) in self.counters[way].iter().enumerate() {
            let bits = w.load(Ordering::Relaxed);
            v[2 * j] = f32::from_bits(bits as u32);
            if 2 * j + 1 < v.len() {
                v[2 * j + 1] = f32::from_bits((bits >> 32) as u32);
            }
        }
        Counts::from_values(times as u32, (times >> 32) as u32, &v)
    }

    /// Writer only, while `seq` is odd.
    fn store(&self, way: usize, c: &Counts) {
        self.times[way].store(u64::from(c.updated_s) | u64::from(c.last_click_s) << 32, Ordering::Relaxed);
        let v = c.values();
        for (j, w) in self.counters[way].iter().enumerate() {
            let hi = v.get(2 * j + 1).map_or(0, |x| x.to_bits());
            w.store(u64::from(v[2 * j].to_bits()) | u64::from(hi) << 32, Ordering::Relaxed);
        }
    }
}

/// How full the store is and what it has done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    pub capacity: usize,
    pub entries: usize,
    /// Events applied since start (or since the store was built).
    pub applied: u64,
    /// Entities dropped to make room for new ones.
    pub evicted: u64,
    /// Reads that waited for the writer after [`OPTIMISTIC_READS`] tries.
    pub waited_reads: u64,
}

#[derive(Default)]
struct Writer {
    entries: usize,
    evicted: u64,
}

/// The store. See the module's invariants.
pub struct AggregateStore {
    sets: Box<[Set]>,
    mask: usize,
    seq: AtomicU64,
    writer: Mutex<Writer>,
    waited_reads: AtomicU64,
}

/// The table as it was after [`Snapshot::applied`] events; valid inside
/// [`AggregateStore::read`]'s closure only.
pub struct Snapshot<'a> {
    store: &'a AggregateStore,
    applied: u64,
}

impl Snapshot<'_> {
    /// The sequence number of the next event at this read: the table had applied every
    /// event numbered below it and none above (where in the event sequence the read sits).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The counters of `key`, `None` when the store does not hold it. The value may be
    /// torn while an event is applied; [`AggregateStore::read`] then discards the
    /// closure's result and runs it again.
    pub fn counts(&self, key: u64) -> Option<Counts> {
        let set = self.store.set_of(key);
        set.find(key).map(|way| set.load(way))
    }
}

impl AggregateStore {
    /// A store for at least `max_entries` entities (rounded up to a power of two, at
    /// least one set), allocated and touched now.
    pub fn new(max_entries: usize) -> AggregateStore {
        let sets = max_entries.div_ceil(WAYS).max(1).next_power_of_two();
        AggregateStore {
            sets: (0..sets).map(|_| Set::default()).collect(),
            mask: sets - 1,
            seq: AtomicU64::new(0),
            writer: Mutex::new(Writer::default()),
            waited_reads: AtomicU64::new(0),
        }
    }

    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// Bytes the table holds (its sets).
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.sets)
    }

    fn set_of(&self, key: u64) -> &Set {
        // Keys are xxh3 hashes: their low bits are as good as any.
        &self.sets[key as usize & self.mask]
    }

    /// Applies one event (to each family whose key it has) and returns its sequence
    /// number: the number of events applied before it.
    pub fn apply(&self, event: &AggEvent) -> u64 {
        let keys: arrayvec::ArrayVec<u64, { Family::ALL.len() }> =
            Family::ALL.iter().filter_map(|f| event.keys.key(*f)).collect();
        self.apply_keys(&keys, event.ts_s, event.outcome)
    }

    /// [`Self::apply`] for the entity keys already worked out.
    pub(super) fn apply_keys(&self, keys: &[u64], ts_s: i64, outcome: Outcome) -> u64 {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.seq.load(Ordering::Relaxed);
        debug_assert!(n.is_multiple_of(2), "only the writer, under its lock, makes seq odd");
        self.seq.store(n + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for &key in keys {
            self.update(&mut w, key, ts_s, outcome);
        }
        self.seq.store(n + 2, Ordering::Release);
        n / 2
    }

    fn update(&self, w: &mut Writer, key: u64, ts_s: i64, outcome: Outcome) {
        let set = self.set_of(key);
        let way = match set.find(key) {
            Some(way) => way,
            None => {
                let way = self.claim(w, set, ts_s);
                set.store(way, &Counts::default());
                set.keys[way].store(key, Ordering::Relaxed);
                way
            }
        };
        let mut c = set.load(way);
        c.add(ts_s, outcome);
        set.store(way, &c);
    }

    /// The way a new key takes in `set`: an empty one, else the least seen lately.
    fn claim(&self, w: &mut Writer, set: &Set, ts_s: i64) -> usize {
        if let Some(empty) = set.find(0) {
            w.entries += 1;
            return empty;
        }
        w.evicted += 1;
        let weight = |way: usize| {
            let c = set.load(way);
            (c.at(ts_s).impressions[H - 1], c.updated_s)
        };
        (0..WAYS)
            .min_by(|&a, &b| weight(a).partial_cmp(&weight(b)).unwrap_or(std::cmp::Ordering::Equal))
            .expect("a set has WAYS ways")
    }

    /// The sequence number the next event takes: the number of events applied, plus the
    /// numbers [`Self::skip_to`] passed over.
    pub fn next_seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire) / 2
    }

    /// Makes `seq` the next event's sequence number (a rebuild from the event log past a
    /// number it has no event for); never goes back.
    pub fn skip_to(&self, seq: u64) {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.seq.load(Ordering::Relaxed);
        if seq * 2 > n {
            self.seq.store(seq * 2, Ordering::Release);
        }
    }

    /// Runs `f` on the table after some whole number of events and returns what it
    /// returned. `f` may run more than once (a run that overlapped an event is thrown
    /// away), so it must not act on the world, only compute.
    pub fn read<R>(&self, mut f: impl FnMut(&Snapshot<'_>) -> R) -> R {
        for _ in 0..OPTIMISTIC_READS {
            let before = self.seq.load(Ordering::Acquire);
            if !before.is_multiple_of(2) {
                std::hint::spin_loop();
                continue;
            }
            let r = f(&Snapshot { store: self, applied: before / 2 });
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return r;
            }
        }
        self.waited_reads.fetch_add(1, Ordering::Relaxed);
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let applied = self.seq.load(Ordering::Relaxed) / 2;
        f(&Snapshot { store: self, applied })
    }

    pub fn stats(&self) -> StoreStats {
        let (entries, evicted) = {
            let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            (w.entries, w.evicted)
        };
        StoreStats {
            capacity: self.capacity(),
            entries,
            applied: self.seq.load(Ordering::Relaxed) / 2,
            evicted,
            waited_reads: self.waited_reads.load(Ordering::Relaxed),
        }
    }
}
