//! Tests of the simulator: determinism, the shape of its output, and agreement with the
//! bidder's own parser, validator and candidate selection.

use super::{generate_catalog, simulate, simulate_to, ImpressionRecord, SimConfig, Summary};
use crate::catalog::{Catalog, Format, Goal, Selector};
use crate::features::{Extractor, FeatureSpec};
use crate::openrtb;
use std::collections::HashSet;
use std::path::Path;

fn small(seed: u64, impressions: u64) -> SimConfig {
    SimConfig { seed, impressions, publishers: 400, users: 5000, ..SimConfig::default() }
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

#[test]
fn same_seed_gives_identical_files_and_another_seed_does_not() {
    let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    simulate(&small(3, 2000), a.path()).unwrap();
    simulate(&small(3, 2000), b.path()).unwrap();
    simulate(&small(4, 2000), c.path()).unwrap();
    for name in ["catalog.json", "requests.jsonl", "impressions.jsonl", "summary.json"] {
        assert!(read(a.path(), name) == read(b.path(), name), "{name} differs between two runs with seed 3");
        assert!(read(a.path(), name) != read(c.path(), name), "{name} is the same for seeds 3 and 4");
    }
}

/// `--compress gzip` logs inflate to the plain logs' bytes, and `ctrbid features` makes
/// the same arrays from either.
#[test]
fn gzip_logs_hold_the_same_bytes_and_give_the_same_features() {
    use crate::jsonl::{gz_path, Compression};
    use std::io::Read;
    let (plain, gzip) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = simulate_to(&small(3, 3000), plain.path(), Compression::None).unwrap();
    let b = simulate_to(&small(3, 3000), gzip.path(), Compression::Gzip).unwrap();
    assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
    for name in ["requests.jsonl", "impressions.jsonl"] {
        assert!(!gzip.path().join(name).exists(), "{name} written plain as well");
        let packed = std::fs::read(gz_path(&gzip.path().join(name))).unwrap();
        let mut inflated = Vec::new();
        flate2::read::MultiGzDecoder::new(&packed[..]).read_to_end(&mut inflated).unwrap();
        assert!(inflated == read(plain.path(), name), "{name}.gz does not inflate to {name}");
        assert!(packed.len() * 3 < inflated.len(), "{name}: {} bytes gzipped of {}", packed.len(), inflated.len());
    }
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/feature_spec.json");
    let (fa, fb) = (plain.path().join("features"), gzip.path().join("features"));
    let rows = crate::cli::features::extract(plain.path(), &spec, &fa).unwrap();
    assert_eq!(crate::cli::features::extract(gzip.path(), &spec, &fb).unwrap(), rows);
    assert_eq!(rows as u64, a.impressions);
    for array in ["cat", "num", "click", "conv", "pctr_true", "pcvr_true", "ts"] {
        let name = format!("{array}.npy");
        assert!(read(&fa, &name) == read(&fb, &name), "{name} differs between plain and gzip logs");
    }
}

#[test]
fn catalog_does_not_depend_on_log_size() {
    let catalog = |n| serde_json::to_string(&generate_catalog(&small(9, n)).unwrap()).unwrap();
    assert_eq!(catalog(10), catalog(1_000_000));
}

#[test]
fn default_catalog_has_the_size_and_formats_the_issue_asks_for() {
    let catalog = generate_catalog(&SimConfig::default()).unwrap();
    catalog.check().unwrap();
    assert!(catalog.campaigns.len() >= 1000, "{} campaigns", catalog.campaigns.len());
    assert!(catalog.creatives.len() >= 3000, "{} creatives", catalog.creatives.len());
    let sizes: HashSet<(u32, u32)> = catalog.creatives.iter().filter_map(|c| c.format.size()).collect();
    let video = catalog.creatives.iter().filter(|c| matches!(c.format, Format::Video { .. })).count();
    let native = catalog.creatives.iter().filter(|c| matches!(c.format, Format::Native)).count();
    assert!(sizes.len() >= 6, "banner sizes {sizes:?}");
    assert!(video >= 100 && native >= 100, "video {video}, native {native}");
    assert!(catalog.campaigns.iter().all(|c| c.max_cpm > 0.0));
    let cpa = catalog.campaigns.iter().filter(|c| c.goal().needs_pcvr()).count() as f64;
    let share = cpa / catalog.campaigns.len() as f64;
    assert!((0.20..=0.30).contains(&share), "CPA share {share}");
}

/// CPA goals price a click about as CPC goals do: goal_cpa x the conversion rate the
/// simulator actually produces spans the CPC goals' range. The rate is measured on a
/// simulated log of the default world (not the constant the goals were built from), and
/// that constant must lie near it.
#[test]
fn cpa_goals_are_comparable_to_cpc_goals() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig { impressions: 60_000, ..SimConfig::default() };
    let summary = simulate(&config, dir.path()).unwrap();
    assert!(summary.clicks >= 500, "{} clicks: too few to measure a conversion rate", summary.clicks);
    // The true mean pCVR over clicked impressions, and what was drawn from it.
    let cvr = summary.mean_pcvr_clicked;
    assert!((summary.cvr / cvr - 1.0).abs() < 0.3, "drawn {} against true {cvr}", summary.cvr);
    assert!(
        (super::ads::TYPICAL_CVR / cvr - 1.0).abs() < 0.15,
        "TYPICAL_CVR {} is not the simulator's conversion rate {cvr}",
        super::ads::TYPICAL_CVR
    );
    let catalog = generate_catalog(&config).unwrap();
    let mean = |cpa: bool| {
        let per_click: Vec<f64> = catalog
            .campaigns
            .iter()
            .filter_map(|c| match c.goal() {
                Goal::Cpc(g) if !cpa => Some(g),
                Goal::Cpa(g) if cpa => Some(g * cvr),
                _ => None,
            })
            .collect();
        per_click.iter().sum::<f64>() / per_click.len() as f64
    };
    let (cpc, cpa) = (mean(false), mean(true));
    assert!((cpa / cpc - 1.0).abs() < 0.15, "mean USD per click: CPC {cpc}, CPA at the measured CVR {cpa}");
}

/// Every request parses and validates with the server's own code, every impression
/// names a request line, an imp of it and a catalog creative, and that creative is one
/// the bidder's selection would consider for that imp.
#[test]
fn logs_agree_with_the_bidder_parser_validator_and_selection() {
    let dir = tempfile::tempdir().unwrap();
    let summary: Summary = simulate(&small(5, 5000), dir.path()).unwrap();
    let catalog = Catalog::load(&dir.path().join("catalog.json")).unwrap();
    let spec = FeatureSpec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/feature_spec.json")).unwrap();
    let selector = Selector::new(catalog, &Extractor::new(spec));
    let requests: Vec<Vec<u8>> = read(dir.path(), "requests.jsonl")
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(requests.len() as u64, summary.requests);

    let impressions: Vec<ImpressionRecord> = String::from_utf8(read(dir.path(), "impressions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(impressions.len() as u64, summary.impressions);
    assert!(impressions.windows(2).all(|w| w[0].ts <= w[1].ts && w[0].line <= w[1].line), "log out of order");

    for imp_log in &impressions {
        let mut body = requests[imp_log.line as usize].clone();
        let req = openrtb::parse(&mut body).unwrap();
        let req = openrtb::validate(req).unwrap();
        assert_eq!(req.id(), imp_log.request_id);
        let (i, imp) = req.imp.iter().enumerate().find(|(_, imp)| imp.id.as_deref() == Some(&imp_log.imp_id)).unwrap();
        let mut candidates = Vec::new();
        let terms =
            crate::catalog::ImpTerms::of(imp, "ctrbid", &crate::currency::Rates::new(&Default::default()).unwrap());
        selector.select_imp(&req, i as u16, imp, &terms, crate::catalog::Limits::ALL, &mut candidates);
        let ids: HashSet<&str> = candidates.iter().map(|c| selector.creative(c.creative).id.as_str()).collect();
        assert!(ids.contains(imp_log.crid.as_str()), "{} is not a candidate for {:?}", imp_log.crid, imp_log);
        assert!(imp_log.pctr > 0.0 && imp_log.pctr < 1.0 && imp_log.pcvr > 0.0 && imp_log.pcvr < 1.0);
        assert!(imp_log.click <= 1 && imp_log.conv <= imp_log.click);
    }
}

#[test]
fn rates_are_in_the_ranges_the_design_fixes() {
    let dir = tempfile::tempdir().unwrap();
    let s = simulate(&small(7, 40_000), dir.path()).unwrap();
    assert!((0.005..=0.03).contains(&s.mean_pctr), "mean true CTR {}", s.mean_pctr);
    assert!((s.ctr - s.mean_pctr).abs() < 0.003, "observed CTR {} vs mean true {}", s.ctr, s.mean_pctr);
    assert!(s.mean_eligible_per_imp >= 20.0, "eligible per imp {}", s.mean_eligible_per_imp);
    assert!(s.no_eligible_share < 0.05, "imps without candidates {}", s.no_eligible_share);
    assert!(s.oracle_auc > 0.65 && s.oracle_auc < 0.95, "oracle AUC {}", s.oracle_auc);
    assert!((0.4..0.95).contains(&s.site_share), "site share {}", s.site_share);
    assert!(s.conversions > 0 && s.conversions < s.clicks);
}

#[test]
fn bad_sizes_are_refused_with_the_flag_name() {
    let dir = tempfile::tempdir().unwrap();
    let err = simulate(&SimConfig { creatives: 10, campaigns: 20, ..small(1, 10) }, dir.path()).unwrap_err();
    assert!(err.to_string().contains("--creatives"), "{err}");
}

/// The default spec gives every value the simulator can send its own bucket in every
/// single field with a small vocabulary (a collision merges two categories for good),
/// and crosses stay nearly collision-free.
#[test]
fn default_spec_keeps_small_vocabularies_apart() {
    use super::vocab::{AD_CATEGORIES, BANNER_SIZES, COUNTRIES, DEVICE_TYPES, OS, POSITIONS, SEGMENTS, TIER1};
    use crate::features::hash::{bucket, bucket_cross, value_hash, value_hash_int, value_hash_lower};

    let spec = FeatureSpec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/feature_spec.json")).unwrap();
    let seed = spec.hash_seed;
    let field = |name: &str| spec.cat.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no field {name}"));
    let strs = |v: &[&str]| v.iter().map(|s| value_hash(seed, s.as_bytes())).collect::<Vec<_>>();
    let ints = |v: &mut dyn Iterator<Item = i64>| v.map(|i| value_hash_int(seed, i)).collect::<Vec<_>>();
    let slots: Vec<String> =
        BANNER_SIZES.iter().map(|(w, h)| format!("{w}x{h}")).chain(["video".into(), "native".into()]).collect();
    let slot_hashes = slots.iter().map(|s| value_hash(seed, s.as_bytes())).collect::<Vec<_>>();
    let content = strs(&TIER1[..24]);
    let ad_tier1 = strs(&TIER1[..23]);
    let hours = ints(&mut (0..24));
    let device_types = ints(&mut DEVICE_TYPES.iter().map(|d| i64::from(d.0)));
    let mut segments = strs(&SEGMENTS);
    segments.push(value_hash(seed, b""));
    let mut positions = ints(&mut POSITIONS.iter().map(|p| i64::from(p.0)).chain([7]));
    positions.push(value_hash(seed, b""));

    let singles: Vec<(&str, Vec<u64>)> = vec![
        ("content_cat", content.clone()),
        ("inventory", strs(&["site", "app", ""])),
        ("device_type", device_types.clone()),
        ("os", OS.iter().map(|o| value_hash_lower(seed, o)).collect()),
        ("country", COUNTRIES.iter().map(|c| value_hash_lower(seed, c.code)).collect()),
        ("hour", hours.clone()),
        ("weekday", ints(&mut (0..7))),
        ("slot", slot_hashes.clone()),
        ("position", positions),
        ("segment1", segments.clone()),
        ("segment2", segments),
        ("ad_category", strs(&AD_CATEGORIES.map(|c| c.0))),
        ("ad_tier1", ad_tier1.clone()),
        ("segment_match", ints(&mut (0..3))),
        ("content_match", ints(&mut (0..2))),
    ];
    let mut shared = Vec::new();
    for (name, values) in singles {
        let f = field(name);
        let buckets: HashSet<u64> = values.iter().map(|&v| bucket(f.seed, v, f.buckets)).collect();
        if buckets.len() != values.len() {
            shared.push(format!("{name} ({} values, {} buckets used)", values.len(), buckets.len()));
        }
    }
    assert!(shared.is_empty(), "values share a bucket in: {}", shared.join(", "));

    let crosses = [
        ("device_type_x_slot", &device_types, &slot_hashes),
        ("content_cat_x_ad_tier1", &content, &ad_tier1),
        ("hour_x_ad_tier1", &hours, &ad_tier1),
    ];
    for (name, a, b) in crosses {
        let f = field(name);
        let pairs = a.len() * b.len();
        let buckets: HashSet<u64> = a
            .iter()
            .flat_map(|&x| b.iter().map(move |&y| (x, y)))
            .map(|(x, y)| bucket_cross(f.seed, x, y, f.buckets))
            .collect();
        assert!(pairs - buckets.len() <= pairs / 20, "{name}: {} of {pairs} pairs collide", pairs - buckets.len());
    }
}
