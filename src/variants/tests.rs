use super::*;
use crate::metrics::Metrics;
use crate::scoring::Heads;

fn info(version: &str, heads: Heads) -> ModelInfo {
    ModelInfo {
        path: format!("/models/{version}.onnx").into(),
        spec_sha256: "00".into(),
        kind: "wide_deep".into(),
        version: version.into(),
        trained_at: String::new(),
        metrics: "{}".into(),
        cat_width: 1,
        num_width: 1,
        heads,
    }
}

fn variant(book: &VariantBook, name: &str, share: u32, heads: Heads) -> Variant {
    Variant {
        name: name.into(),
        role: Role::Candidate,
        share,
        model: info(name, heads),
        // No sessions: these tests never score.
        batcher: Arc::new(Batcher::start_inline(Vec::new(), Metrics::start())),
        cache: None,
        counters: book.counters(name).unwrap(),
        since_unix: 0,
        drift: None,
    }
}

/// Who gets how many of `n` users.
fn split(set: &VariantSet, n: usize) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for u in 0..n {
        *counts.entry(set.pick(Some(&format!("user-{u}")), "r").name.clone()).or_default() += 1;
    }
    counts
}

#[test]
fn users_split_by_share_and_keep_their_variant() {
    let book = VariantBook::default();
    let one = VariantSet::of(variant(&book, "main", 0, Heads::Pctr));
    assert_eq!(one.incumbent().role, Role::Incumbent);
    assert_eq!(split(&one, 1000)["main"], 1000);
    let two = one.with_candidate(variant(&book, "cand", 1_000, Heads::Pctr)).unwrap();
    let counts = split(&two, 20_000);
    // 10 % of 20,000 users: binomial sd 42, so 2,000 ± 200 fails one run in 10^6.
    assert!((1_800..=2_200).contains(&counts["cand"]), "{counts:?}");
    // One user, one variant, every time; a request without a user follows its id.
    for u in 0..100 {
        let user = format!("user-{u}");
        assert_eq!(two.pick(Some(&user), "a").name, two.pick(Some(&user), "b").name);
    }
    let by_request = (0..20_000).filter(|r| two.pick(None, &format!("req-{r}")).name == "cand").count();
    assert!((1_800..=2_200).contains(&by_request), "{by_request}");
    // A larger share keeps every user the candidate had.
    let wider = two.with_share("cand", 3_000).unwrap();
    for u in 0..5_000 {
        let user = format!("user-{u}");
        if two.pick(Some(&user), "r").name == "cand" {
            assert_eq!(wider.pick(Some(&user), "r").name, "cand", "{user}");
        }
    }
    let counts = split(&wider, 20_000);
    assert!((5_700..=6_300).contains(&counts["cand"]), "{counts:?}");
}

#[test]
fn changes_that_break_the_invariants_are_refused_with_the_reason() {
    let book = VariantBook::default();
    let set = VariantSet::of(variant(&book, "main", 0, Heads::Pctr))
        .with_candidate(variant(&book, "a", 6_000, Heads::Pctr))
        .unwrap();
    let err = |r: Result<VariantSet, String>| r.unwrap_err();
    assert!(err(set.with_candidate(variant(&book, "a", 100, Heads::Pctr))).contains("already serving"));
    assert!(err(set.with_candidate(variant(&book, "main", 100, Heads::Pctr))).contains("already serving"));
    assert!(err(set.with_candidate(variant(&book, "Bad-Name", 100, Heads::Pctr))).contains("variant name"));
    assert!(err(set.with_candidate(variant(&book, "b", 4_001, Heads::Pctr))).contains("at most 0.4000"));
    assert!(err(set.with_candidate(variant(&book, "b", 0, Heads::Pctr))).contains("above 0"));
    assert!(err(set.with_candidate(variant(&book, "b", 100, Heads::PctrPcvr))).contains("heads"));
    assert!(err(set.with_share("main", 100)).contains("is the incumbent"));
    assert!(err(set.with_share("zz", 100)).contains("no variant named zz"));
    assert!(err(set.promoted("main")).contains("is the incumbent"));
    assert!(err(set.without("zz")).contains("no variant named zz"));
    // What is left is fine, and nothing above changed the set.
    let full = set.with_candidate(variant(&book, "b", 4_000, Heads::Pctr)).unwrap();
    assert_eq!(full.candidates_share(), FULL_SHARE);
    assert_eq!(set.all().len(), 2);
}

#[test]
fn promote_and_roll_back() {
    let book = VariantBook::default();
    let set = VariantSet::of(variant(&book, "main", 0, Heads::Pctr))
        .with_candidate(variant(&book, "a", 1_000, Heads::Pctr))
        .unwrap()
        .with_candidate(variant(&book, "b", 2_000, Heads::Pctr))
        .unwrap();
    let promoted = set.promoted("a").unwrap();
    let names: Vec<(&str, Role, u32)> = promoted.all().iter().map(|v| (v.name.as_str(), v.role, v.share)).collect();
    assert_eq!(names, [("a", Role::Incumbent, FULL_SHARE), ("b", Role::Candidate, 2_000)]);
    let back = set.without("b").unwrap();
    assert_eq!(back.all().iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["main", "a"]);
    assert_eq!(split(&back.without("a").unwrap(), 100)["main"], 100);
}

#[test]
fn notices_count_for_the_variant_they_name() {
    use crate::notice::{Kind, ModelTag};
    let book = VariantBook::default();
    let set = VariantSet::of(variant(&book, "main", 0, Heads::Pctr));
    let tag = ModelTag::of("cand", 0.25);
    book.on_notice(Kind::Win, true, &tag, 0.0);
    // The bill of the same impression adds spend, not a second win.
    book.on_notice(Kind::Bill, false, &tag, 0.0021);
    book.on_notice(Kind::Loss, false, &tag, 0.0);
    book.on_notice(Kind::Click, false, &tag, 0.0);
    book.on_notice(Kind::Conv, false, &ModelTag { pctr_ppm: 0, ..tag.clone() }, 0.0);
    let t = book.counters("cand").unwrap().read();
    assert_eq!((t.wins, t.clicks, t.conversions, t.spend_usd, t.won_pctr), (1, 1, 1, 0.0021, 0.25));
    assert_eq!(t.calibration(), Some(0.25));
    assert_eq!(book.counters("main").unwrap().read().wins, 0);
    let mut text = String::new();
    book.render(&set, &mut text);
    for line in [
        "ctrbid_variant_wins_total{variant=\"cand\"} 1\n",
        "ctrbid_variant_won_pctr_sum{variant=\"cand\"} 0.250000\n",
        "ctrbid_variant_spend_usd_total{variant=\"cand\"} 0.002100\n",
        "ctrbid_variant_share{variant=\"main\"} 1.0000\n",
        "ctrbid_variant_info{variant=\"main\",model=\"main\",role=\"incumbent\"} 1\n",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

#[test]
fn the_book_is_bounded() {
    let book = VariantBook::default();
    for i in 0..crate::metrics::VARIANT_SLOTS {
        assert_eq!(book.counters(&format!("v{i}")).unwrap().slot as usize, i);
    }
    assert!(book.counters("one_more").is_none());
    assert_eq!(book.counters("v3").unwrap().slot, 3, "known names still answer");
    book.on_notice(crate::notice::Kind::Click, false, &crate::notice::ModelTag::of("one_more", 0.1), 0.0);
    assert_eq!(book.unknown.load(Ordering::Relaxed), 1);
}

#[test]
fn a_shadow_takes_no_users_and_scores_its_share_of_the_requests() {
    let book = VariantBook::default();
    let set = VariantSet::of(variant(&book, "main", 0, Heads::Pctr))
        .with_candidate(variant(&book, "cand", 5_000, Heads::Pctr))
        .unwrap();
    let before = split(&set, 2_000);
    let shadowed = set.with_shadow(variant(&book, "shadow", 2_000, Heads::Pctr)).unwrap();
    assert_eq!(shadowed.get("shadow").unwrap().role, Role::Shadow);
    assert!(shadowed.has_shadows() && !set.has_shadows());
    // No user moves: the shadow takes none, and the assignment's salt is the candidates'.
    assert_eq!(split(&shadowed, 2_000), before);
    assert_eq!(shadowed.candidates_share(), 5_000);
    // 20 % of the request ids, whichever variant bids: binomial sd 57 of 20,000.
    let n = (0..20_000).filter(|r| shadowed.shadows_of(&format!("req-{r}")).next().is_some()).count();
    assert!((3_700..=4_300).contains(&n), "{n}");
    // Its share is its own: up to all requests though the candidate takes half the users.
    let all = shadowed.with_share("shadow", FULL_SHARE).unwrap();
    assert!((0..1_000).all(|r| all.shadows_of(&format!("req-{r}")).next().is_some()));
    assert!(shadowed.with_share("shadow", 0).is_err());
    assert!(shadowed.check_shadow("shadow", 100).unwrap_err().contains("already serving"));
    assert!(shadowed.promoted("shadow").unwrap_err().contains("is a shadow"));
    let gone = shadowed.without("shadow").unwrap();
    assert!(gone.get("shadow").is_none() && !gone.has_shadows());
}

#[test]
fn a_shadows_counts_set_its_predictions_beside_the_served_ones() {
    let c = ShadowCounters::default();
    // Imp 1: the shadow ranks the second candidate first, the served model the first.
    c.count(&[0.1, 0.3, 0.2], &[0.2, 0.1, 0.2], &[2, 1], 2_000_000);
    let t = c.read(2);
    assert_eq!((t.rows, t.imps), (3, 2));
    assert!((t.pctr_ratio.unwrap() - 0.6 / 0.5).abs() < 1e-9, "{t:?}");
    assert_eq!(t.other_top_share, Some(0.5));
    assert_eq!(t.ms_per_request, Some(1.0));
    assert_eq!(ShadowCounters::default().read(0).pctr_ratio, None);
}
