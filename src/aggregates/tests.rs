use super::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const T0: i64 = 1_767_571_200; // 2026-01-05 00:00 UTC

fn keys(user: Option<&str>, publisher: Option<&str>, campaign: &str, creative: &str, category: &str) -> EntityKeys {
    EntityKeys {
        user: user.map(id_hash),
        publisher: publisher.map(id_hash),
        campaign: id_hash(campaign),
        creative: id_hash(creative),
        ad_category: id_hash(category),
    }
}

fn full() -> EntityKeys {
    keys(Some("u1"), Some("pub1"), "cmp-1", "cr-1", "IAB3")
}

fn event(ts_s: i64, outcome: Outcome, keys: EntityKeys) -> AggEvent {
    AggEvent { ts_s, outcome, keys }
}

fn counts(store: &AggregateStore, key: Option<u64>) -> Option<Counts> {
    store.read(|s| s.counts(key?))
}

#[test]
fn keys_are_never_zero_and_differ_by_family() {
    let k = full();
    let all: Vec<u64> = Family::ALL.iter().map(|f| k.key(*f).unwrap()).collect();
    assert!(all.iter().all(|x| *x != 0));
    let mut unique = all.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "one key per family for the same ids");
    // The same hash as user and as campaign is two entities.
    assert_ne!(family_key(Family::User, 42, 0), family_key(Family::Campaign, 42, 0));
    assert_eq!(Family::parse("publisher_campaign"), Some(Family::PublisherCampaign));
    assert_eq!(Family::parse("nope"), None);
}

#[test]
fn a_count_halves_after_each_half_life() {
    let store = AggregateStore::new(64);
    let k = full();
    store.apply(&event(T0, Outcome::Impression, k));
    let c = counts(&store, k.key(Family::Creative)).unwrap();
    assert_eq!(c.impressions, [1.0; 3]);
    assert_eq!(c.clicks, [0.0; 3]);
    for (i, h) in HALF_LIVES_S.iter().enumerate() {
        assert_eq!(c.at(T0 + i64::from(*h)).impressions[i], 0.5, "half-life {i}");
        assert_eq!(c.at(T0 + 2 * i64::from(*h)).impressions[i], 0.25);
    }
    // Reading earlier than the last update changes nothing.
    assert_eq!(c.at(T0 - 100), c);
}

#[test]
fn an_event_decays_the_counts_to_its_time_then_adds() {
    let store = AggregateStore::new(64);
    let k = full();
    store.apply(&event(T0, Outcome::Impression, k));
    store.apply(&event(T0 + 3_600, Outcome::Impression, k));
    store.apply(&event(T0 + 3_600, Outcome::Click, k));
    let c = counts(&store, k.key(Family::User)).unwrap();
    assert_eq!(c.updated_s, (T0 + 3_600) as u32);
    assert_eq!(c.last_click_s, (T0 + 3_600) as u32);
    assert_eq!(c.impressions[0], 1.5); // 1 x 2^-1 + 1 at the hour's half-life
    assert!((c.impressions[1] - (1.0 + 2f32.powf(-1.0 / 24.0))).abs() < 1e-6);
    assert_eq!(c.clicks, [1.0; 3]);
}

#[test]
fn a_late_event_adds_its_decayed_share_without_moving_time() {
    let store = AggregateStore::new(64);
    let k = full();
    store.apply(&event(T0 + 3_600, Outcome::Impression, k));
    store.apply(&event(T0, Outcome::Click, k)); // an hour older than the impression
    let c = counts(&store, k.key(Family::Campaign)).unwrap();
    assert_eq!(c.updated_s, (T0 + 3_600) as u32);
    assert_eq!(c.clicks[0], 0.5);
    assert_eq!(c.last_click_s, T0 as u32);
    // Read at the same later time, the order of two events does not change the counts
    // (up to rounding).
    let other = AggregateStore::new(64);
    other.apply(&event(T0, Outcome::Click, k));
    other.apply(&event(T0 + 3_600, Outcome::Impression, k));
    let d = counts(&other, k.key(Family::Campaign)).unwrap();
    for i in 0..3 {
        assert!((c.at(T0 + 7_200).clicks[i] - d.at(T0 + 7_200).clicks[i]).abs() < 1e-6);
    }
}

#[test]
fn families_without_their_ids_are_not_updated() {
    let store = AggregateStore::new(64);
    let k = keys(None, None, "cmp-1", "cr-1", "IAB3");
    store.apply(&event(T0, Outcome::Impression, k));
    assert_eq!(store.stats().entries, 2, "campaign and creative only");
    assert_eq!(counts(&store, k.key(Family::User)), None);
}

#[test]
fn a_full_set_evicts_the_entity_least_seen_lately() {
    // One set of four slots: every key lands in it.
    let store = AggregateStore::new(4);
    assert_eq!(store.capacity(), 4);
    let only = |name: &str, n: usize, store: &AggregateStore| {
        let key = family_key(Family::Campaign, id_hash(name), 0);
        for _ in 0..n {
            store_one(store, key);
        }
        key
    };
    let a = only("a", 3, &store);
    let b = only("b", 1, &store);
    let c = only("c", 2, &store);
    let d = only("d", 4, &store);
    let e = only("e", 1, &store);
    let held: Vec<bool> = [a, b, c, d, e].iter().map(|k| store.read(|s| s.counts(*k).is_some())).collect();
    assert_eq!(held, [true, false, true, true, true], "b had the fewest impressions");
    let stats = store.stats();
    assert_eq!((stats.entries, stats.evicted), (4, 1));
}

/// One impression for a single raw key, through the same path as events.
fn store_one(store: &AggregateStore, key: u64) {
    store.apply_keys(&[key], T0, Outcome::Impression);
}

#[test]
fn a_read_sees_whole_events_and_counts_them() {
    let store = AggregateStore::new(1 << 10);
    let k = full();
    let events: Vec<AggEvent> =
        (0..50).map(|i| event(T0 + i * 60, if i % 7 == 3 { Outcome::Click } else { Outcome::Impression }, k)).collect();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(store.apply(e), i as u64, "sequence numbers count the events before");
        // A fresh store fed the first i + 1 events reads the same, bit for bit.
        let replay = AggregateStore::new(1 << 10);
        for e in &events[..=i] {
            replay.apply(e);
        }
        for f in Family::ALL {
            let key = k.key(f);
            let (live, applied) = store.read(|s| (s.counts(key.unwrap()), s.applied()));
            assert_eq!(applied, i as u64 + 1);
            assert_eq!(live, counts(&replay, key), "{f:?} after {} events", i + 1);
        }
    }
}

#[test]
fn concurrent_reads_never_see_part_of_an_event() {
    // Every event updates the user and the campaign alike, so any whole-event state has
    // equal counters for both; a torn read would see them differ.
    let store = Arc::new(AggregateStore::new(1 << 12));
    let k = full();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, done) = (Arc::clone(&store), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let (u, c, applied) = store.read(|s| {
                        (
                            s.counts(k.key(Family::User).unwrap()),
                            s.counts(k.key(Family::Campaign).unwrap()),
                            s.applied(),
                        )
                    });
                    let (u, c) = (u.map(|x| x.impressions), c.map(|x| x.impressions));
                    assert_eq!(u, c, "after {applied} events");
                    if applied > 0 {
                        assert_eq!(u.unwrap()[2], applied as f32, "no decay within one second");
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for _ in 0..200_000 {
        store.apply(&event(T0, Outcome::Impression, k));
    }
    done.store(true, Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 0);
    assert_eq!(store.stats().applied, 200_000);
}

#[test]
fn a_slot_is_one_cache_line() {
    let store = AggregateStore::new(1 << 10);
    assert_eq!(store.bytes(), store.capacity() * 64);
}

#[test]
fn an_audience_reads_back_from_its_url_form() {
    for a in [
        Audience { user: Some(1), publisher: Some(u64::MAX) },
        Audience { user: None, publisher: Some(0xabc) },
        Audience { user: Some(0xabc), publisher: None },
        Audience::default(),
    ] {
        assert_eq!(Audience::from_param(&a.to_param()), Ok(a), "{}", a.to_param());
    }
    assert_eq!(Audience { user: Some(0xab), publisher: None }.to_param(), "ab.");
    for bad in ["", "ab", "0.1", "x.1", "1.10000000000000000"] {
        assert!(Audience::from_param(bad).is_err(), "{bad}");
    }
}
