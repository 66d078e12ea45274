use super::user::UserCaps;
use super::*;
use std::sync::Barrier;

const T: i64 = 1_780_000_000;
const DAY: u32 = 86_400;
const U: u64 = 42;

fn cap(impressions: u32, window_s: u32) -> FrequencyCap {
    FrequencyCap { impressions, window_s }
}

/// What the store counts against `item` for `user` at `now` in a `window_s` window,
/// through the public API only: the smallest cap that still allows, less one.
fn used(store: &CapStore, user: u64, item: u32, window_s: u32, now: i64) -> u32 {
    (1..=MAX_IMPRESSIONS + 1).find(|&n| store.allows(user, item, cap(n, window_s), now)).unwrap() - 1
}

#[test]
fn user_key_takes_the_first_stable_id() {
    let key = |id: &str| user_key(Some(id), None, None);
    let check = |user: Option<&str>, buyer: Option<&str>, ifa: Option<&str>, expected: Option<&str>| {
        assert_eq!(user_key(user, buyer, ifa), expected.and_then(key), "{user:?} {buyer:?} {ifa:?}");
    };
    check(Some("u"), Some("b"), Some("i"), Some("u"));
    check(None, Some("b"), Some("i"), Some("b"));
    check(Some(""), Some("b"), Some("i"), Some("b"));
    check(None, None, Some("i"), Some("i"));
    check(Some(""), Some(""), Some("i"), Some("i"));
    check(None, None, Some("00000000-0000-0000-0000-000000000000"), None);
    check(None, Some("b"), Some("00000000-0000-0000-0000-000000000000"), Some("b"));
    check(Some("0"), None, Some("6d92078a-8246-4ba4-ae5b-76104861e7dc"), Some("6d92078a-8246-4ba4-ae5b-76104861e7dc"));
    check(None, None, Some("00000000000000000000000000000000"), None);
    check(None, None, None, None);
    check(Some(""), Some(""), Some(""), None);
}

#[test]
fn keys_and_items_are_stable() {
    // Pinned: snapshots and reloads depend on these never changing.
    let pinned = (user_key(Some("user-1"), None, None), campaign_item("c-1"), creative_item("c-1"));
    assert_eq!(pinned, (Some(0x2589_7c65_efc4_50f2), 2_085_518_127, 2_085_518_127 | 1 << 31));
    for id in ["c-1", "c-2", "", "a much longer campaign id than most"] {
        assert_ne!(campaign_item(id), creative_item(id), "{id}");
        assert_eq!(campaign_item(id) >> 31, 0, "{id}");
        assert_eq!(creative_item(id) >> 31, 1, "{id}");
        assert_ne!(user_key(Some(id), None, None), Some(0));
    }
}

#[test]
fn cap_check_names_the_field() {
    let check = |impressions, window_s, expected: Option<&str>| {
        let got = cap(impressions, window_s).check();
        match expected {
            None => assert_eq!(got, Ok(()), "{impressions}/{window_s}"),
            Some(field) => assert!(got.unwrap_err().starts_with(field), "{impressions}/{window_s}"),
        }
    };
    check(1, 60, None);
    check(3, DAY, None);
    check(MAX_IMPRESSIONS, MAX_WINDOW_S, None);
    check(0, DAY, Some("impressions"));
    check(MAX_IMPRESSIONS + 1, DAY, Some("impressions"));
    check(3, 59, Some("window_s"));
    check(3, MAX_WINDOW_S + 1, Some("window_s"));
    let parsed: FrequencyCap = serde_json::from_str(r#"{"impressions": 3, "window_s": 86400}"#).unwrap();
    assert_eq!(parsed, cap(3, DAY));
    assert!(serde_json::from_str::<FrequencyCap>(r#"{"impressions": 3, "window_s": 60, "x": 1}"#).is_err());
}

#[test]
fn window_slides() {
    let s = CapStore::new(10);
    for at in [T, T + 10, T + 20] {
        s.won(U, 7, 0, at);
    }
    let c = cap(3, 100);
    let check = |now, expected| assert_eq!(s.allows(U, 7, c, now), expected, "at T+{}", now - T);
    check(T + 20, false);
    check(T + 50, false);
    check(T + 99, false);
    check(T + 100, true); // T is out of (T, T+100]
    check(T + 101, true);
    assert!(s.allows(U, 8, c, T + 50), "another item");
    assert!(s.allows(U, 7 + 64, c, T + 50), "another item with the same bit in the filter");
    assert!(s.allows(U + 1, 7, c, T + 50), "another user");
    assert_eq!(used(&s, U, 7, 100, T + 101), 2);
    assert_eq!(used(&s, U, 7, 100, T + 200), 0);
}

#[test]
fn reservations_count_and_lapse_at_expiry() {
    let s = CapStore::new(10);
    let c = cap(2, DAY);
    assert!(s.reserve(U, 7, c, 1, T + 30, T));
    assert!(s.reserve(U, 7, c, 1, T + 30, T), "the same bid again: no second slot");
    assert!(s.reserve(U, 7, c, 2, T + 60, T));
    assert!(!s.reserve(U, 7, c, 3, T + 60, T), "cap reached");
    let check = |now, expected| assert_eq!(used(&s, U, 7, DAY, now), expected, "at T+{}", now - T);
    check(T, 2);
    check(T + 30, 2); // live up to and including `expires`
    check(T + 31, 1);
    check(T + 61, 0);
    assert!(s.reserve(U, 7, c, 3, T + 90, T + 31));
    assert!(!s.reserve(U, 7, c, 4, T + 90, T + 31));
    assert_eq!(s.stats().refused, 0, "a cap is not a lack of room");
}

#[test]
fn won_converts_exactly_one_reservation() {
    let s = CapStore::new(10);
    let c = cap(3, DAY);
    assert!(s.reserve(U, 7, c, 1, T + 60, T));
    assert!(s.reserve(U, 7, c, 2, T + 60, T));
    s.won(U, 7, 1, T + 5);
    assert_eq!(used(&s, U, 7, DAY, T + 10), 2, "one impression, one reservation");
    assert_eq!(used(&s, U, 7, DAY, T + 61), 1, "bid 2's reservation lapsed, the impression stays");
    s.won(U, 7, 9, T + 70); // no reservation: recorded all the same
    assert_eq!(used(&s, U, 7, DAY, T + 70), 2);
    s.won(U, 8, 2, T + 70); // bid 2 reserved item 7, not item 8
    assert_eq!((used(&s, U, 7, DAY, T + 70), used(&s, U, 8, DAY, T + 70)), (2, 1));
}

#[test]
fn lost_frees_one_reservation() {
    let s = CapStore::new(10);
    let c = cap(2, DAY);
    assert!(s.reserve(U, 7, c, 1, T + 60, T));
    assert!(s.reserve(U, 7, c, 2, T + 60, T));
    s.lost(U, 7, 3); // unknown bid
    s.lost(U, 8, 1); // bid 1 reserved item 7
    s.lost(U + 1, 7, 1); // unknown user
    assert_eq!(used(&s, U, 7, DAY, T), 2);
    s.lost(U, 7, 1);
    assert_eq!(used(&s, U, 7, DAY, T), 1);
    assert!(s.reserve(U, 7, c, 3, T + 60, T));
    s.won(U, 7, 1, T); // a win for the lost bid (contradicting notices): an impression
    assert_eq!(used(&s, U, 7, DAY, T), 3);
}

#[test]
fn a_cap_change_counts_existing_impressions() {
    let s = CapStore::new(10);
    for (bid, at) in [(1, T), (2, T + 3600), (3, T + 7200)] {
        assert!(s.reserve(U, 7, cap(5, DAY), bid, at + 60, at));
        s.won(U, 7, bid, at);
    }
    let check = |c: FrequencyCap, expected| assert_eq!(s.allows(U, 7, c, T + 7300), expected, "{c:?}");
    check(cap(5, DAY), true);
    check(cap(3, DAY), false);
    check(cap(2, DAY), false);
    check(cap(4, DAY), true);
    check(cap(3, 3600), true); // a shorter window sees one
    check(cap(1, 3600), false);
}

#[test]
fn at_most_max_impressions_kept_per_item() {
    let s = CapStore::new(10);
    for i in 0..40 {
        s.won(U, 7, i, T + i as i64);
    }
    assert_eq!(used(&s, U, 7, DAY, T + 40), MAX_IMPRESSIONS);
    assert!(!s.allows(U, 7, cap(MAX_IMPRESSIONS, DAY), T + 40));
    // The newest are kept: those at T+8 ..= T+39.
    assert_eq!(used(&s, U, 7, 60, T + 8 + 60), 31);
}

#[test]
fn a_full_user_is_refused_and_keeps_its_newest() {
    let s = CapStore::new(10);
    let c = cap(MAX_IMPRESSIONS, DAY);
    for i in 0..MAX_EVENTS as u64 - 1 {
        s.won(U, (i % 64) as u32, i, T + i as i64);
    }
    assert!(s.reserve(U, 100, c, 1000, T + 3600, T + 100));
    assert!(!s.reserve(U, 101, c, 1001, T + 3600, T + 100), "the user is full");
    assert_eq!(s.stats().refused, 1);
    s.won(U, 102, 1002, T + 200); // the oldest impression (item 0 at T) goes
    assert_eq!(used(&s, U, 0, DAY, T + 200), 7);
    assert_eq!(used(&s, U, 102, DAY, T + 200), 1);
    s.won(U, 100, 1000, T + 201);
    assert_eq!(used(&s, U, 100, DAY, T + 201), 1);
}

#[test]
fn max_users_bounds_the_store() {
    let s = CapStore::new(2);
    let c = cap(3, DAY);
    assert!(s.reserve(1, 7, c, 1, T + 60, T));
    s.won(2, 7, 2, T);
    assert!(!s.reserve(3, 7, c, 3, T + 60, T), "no room: refused, not let through");
    s.won(4, 7, 4, T); // not recorded
    assert!(s.reserve(1, 8, c, 5, T + 60, T), "tracked users go on");
    assert!(s.reserve(2, 7, c, 6, T + 60, T));
    let st = s.stats();
    assert_eq!((st.users, st.refused, st.untracked), (2, 1, 1));
    assert!(!s.user(3).is_tracked() && !s.user(4).is_tracked());
    s.sweep(T + 61, DAY); // user 1 held reservations only: gone
    assert_eq!(s.stats().users, 1);
    assert!(s.reserve(3, 7, c, 7, T + 120, T + 61), "room again");
}

#[test]
fn sweep_drops_what_no_window_sees() {
    let s = CapStore::new(100);
    let c = cap(3, 3600);
    s.won(1, 7, 1, T); // old
    s.won(2, 7, 2, T);
    s.won(2, 8, 3, T + 5000); // recent
    assert!(s.reserve(3, 7, c, 4, T + 5100, T + 5000)); // reservation only
    assert!(s.reserve(4, 7, c, 5, T + 9000, T + 5000));
    s.sweep(T + 5000, 3600);
    let st = s.stats();
    assert_eq!((st.users, st.items, st.reservations), (3, 3, 2));
    assert!(!s.user(1).is_tracked());
    assert_eq!((used(&s, 2, 7, DAY, T + 5000), used(&s, 2, 8, DAY, T + 5000)), (0, 1));
    s.sweep(T + 5101, 3600);
    assert_eq!((s.stats().users, s.stats().reservations), (2, 1));
    s.sweep(T + 9001, 3600);
    assert_eq!(s.stats(), CapStats { bytes_per_user: 0, ..CapStats::default() });
}

#[test]
fn sweep_moves_short_lists_back_inline() {
    let s = CapStore::new(10);
    for i in 0..20 {
        s.won(U, i as u32, i, T + i as i64);
    }
    s.sweep(T + 100, 3600);
    assert!(s.stats().bytes_per_user > size_of::<UserCaps>() + 20 * 8);
    s.sweep(T + 3600 + 15, 3600); // those at T+16 ..= T+19 remain
    assert_eq!(used(&s, U, 19, DAY, T + 3615), 1);
    let st = s.stats();
    assert_eq!(st.items, 4);
    assert!(st.bytes_per_user < size_of::<UserCaps>() * 64, "{st:?}");
    s.for_each(|_, u| assert_eq!(u.heap_bytes(), 0));
}

#[test]
fn snapshot_round_trips() {
    let s = CapStore::new(100);
    let c = cap(3, DAY);
    for user in 1..=20u64 {
        for item in 0..(user % 3) as u32 {
            s.won(user, item, user, T + user as i64);
        }
        assert!(s.reserve(user, 9, c, 100 + user, T + 600, T));
    }
    let snap = s.snapshot();
    let json = serde_json::to_string(&snap).unwrap();
    let back = CapStore::new(100);
    assert_eq!(back.restore(serde_json::from_str(&json).unwrap()), 20);
    assert_eq!(back.snapshot(), snap);
    for user in 1..=20u64 {
        for item in [0, 1, 2, 9] {
            assert_eq!(used(&back, user, item, DAY, T + 30), used(&s, user, item, DAY, T + 30), "{user}/{item}");
        }
    }
    back.won(5, 9, 105, T + 40); // the reservation survived the restart: converted, not added to
    assert_eq!(used(&back, 5, 9, DAY, T + 50), 1);
    // A snapshot beyond the bounds is held to them.
    let big = UserSnapshot { user: 7, shown: (0..100).map(|i| (1, T as u32 + i)).collect(), held: vec![] };
    let b = CapStore::new(100);
    assert_eq!(b.restore(CapSnapshot { users: vec![big] }), 1);
    assert_eq!(b.snapshot().users[0].shown.len(), MAX_IMPRESSIONS as usize);
    assert_eq!(b.snapshot().users[0].shown[0], (1, T as u32 + 68), "the newest kept");
}

#[test]
fn view_sees_what_the_store_sees() {
    let s = CapStore::new(10);
    s.won(U, 7, 1, T);
    let c = cap(1, DAY);
    {
        let v = s.user(U);
        assert!(v.is_tracked());
        assert!(!v.allows(7, c, T + 1));
        assert!(v.allows(8, c, T + 1));
        assert!(v.allows(7, c, T + DAY as i64));
    }
    let unknown = s.user(U + 1);
    assert!(!unknown.is_tracked());
    assert!(unknown.allows(7, c, T) && unknown.allows(7, cap(0, 60), T), "an unknown user allows everything");
}

/// Eight threads released together, thread `t` reserving for `user(t)`; how many got a slot.
fn race_to_reserve(s: &CapStore, user: impl Fn(u64) -> u64 + Sync) -> usize {
    let barrier = Barrier::new(8);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let (barrier, user) = (&barrier, &user);
                scope.spawn(move || {
                    barrier.wait();
                    usize::from(s.reserve(user(t), 7, cap(3, DAY), t, T + 60, T))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

#[test]
fn concurrent_reserves_stop_at_the_cap() {
    for round in 0..50u64 {
        let s = CapStore::new(10);
        assert_eq!(race_to_reserve(&s, |_| U), 3, "round {round}");
        assert_eq!(used(&s, U, 7, DAY, T), 3);
        assert_eq!(s.stats().users, 1, "one entry, whoever inserted it");
    }
}

#[test]
fn concurrent_new_users_stop_at_max_users() {
    for round in 0..50u64 {
        let s = CapStore::new(5);
        let successes = race_to_reserve(&s, |t| 100 + t);
        let st = s.stats();
        assert_eq!((successes, st.users, st.refused), (5, 5, 3), "round {round}");
    }
}

#[test]
fn a_typical_user_fits_in_its_entry() {
    assert_eq!(size_of::<UserCaps>(), 104);
    let s = CapStore::new(200_000);
    let c = cap(3, DAY);
    for user in 1..=100_000u64 {
        for item in [3, 4] {
            for k in 0..3 {
                assert!(s.reserve(user, item, c, k, T + 60, T));
                s.won(user, item, k, T + k as i64);
            }
        }
    }
    s.sweep(T + 100, DAY);
    let st = s.stats();
    assert_eq!((st.users, st.items, st.reservations), (100_000, 200_000, 0));
    s.for_each(|_, u| assert_eq!(u.heap_bytes(), 0));
    // 113 bytes a bucket; between 1/2 and 7/8 of the buckets in use.
    assert!((129..=226).contains(&st.bytes_per_user), "{st:?}");
}

#[test]
fn a_fleet_divides_every_cap_exactly() {
    for members in 1..=7u16 {
        for places in 1..=MAX_IMPRESSIONS {
            let (mut spread, mut favoured) = (0u32, std::collections::HashSet::new());
            for pair in 0..200u64 {
                let (user, item) = (pair.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1, campaign_item(&pair.to_string()));
                let shares: Vec<u32> =
                    (0..members).map(|rank| CapShare { members, rank }.places(user, item, places)).collect();
                assert_eq!(shares.iter().sum::<u32>(), places, "{members} members, {places} places: {shares:?}");
                let (lo, hi) = (*shares.iter().min().unwrap(), *shares.iter().max().unwrap());
                assert!(hi - lo <= 1, "{members} members, {places} places: {shares:?}");
                spread += hi - lo;
                favoured.extend((0..shares.len()).filter(|&r| shares[r] > lo));
            }
            if places % u32::from(members) != 0 {
                // The remainder places fall to different instances for different pairs.
                assert!(spread > 0 && favoured.len() == usize::from(members), "{members} members, {places} places");
            }
        }
    }
}

#[test]
fn a_share_caps_what_this_instance_may_show() {
    let c = cap(3, DAY);
    assert_eq!(CapShare::ALONE.cap(U, 7, c), c, "alone, every place is its own");
    assert_eq!(CapShare::NONE.cap(U, 7, c).impressions, 0, "a fleet not known yet: none");
    assert_eq!(CapShare { members: 2, rank: 2 }.cap(U, 7, c).impressions, 0, "a rank past the members: none");
    assert_eq!(CapShare::unpack(CapShare { members: 5, rank: 3 }.pack()), CapShare { members: 5, rank: 3 });
    // Three instances, a cap of 3: one place each, so the store, counting this
    // instance's own bids, refuses the second.
    let store = CapStore::new(10);
    let mine = CapShare { members: 3, rank: 1 }.cap(U, 7, c);
    assert_eq!(mine, cap(1, DAY));
    assert!(store.reserve(U, 7, mine, 1, T + 60, T));
    assert!(!store.reserve(U, 7, mine, 2, T + 60, T));
    assert!(store.reserve(U, 7, c, 2, T + 60, T), "the whole cap would allow it");
}
