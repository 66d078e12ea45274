//! The feature spec (`models/feature_spec.json`): which fields a model sees, where each
//! value comes from, and how many hash buckets each field gets.
//!
//! Invariants after [`FeatureSpec::load`]: every bucket count is a power of two; field
//! names are unique; crosses name two earlier single fields; offsets are the running sum
//! of bucket counts in file order, so every index lies in `0..cardinality`. The SHA-256
//! of the file's bytes identifies the spec; every model carries it.
//!
//! The same file format describes table specs (`super::table`), whose sources are CSV
//! columns written `kind:COLUMN`; [`parse`] is shared and only the [`Sources`] that
//! resolve source names differ. **A served spec never has a source with a colon**:
//! OpenRTB sources are dotted paths, so a spec with a `column:` source is a table spec,
//! and [`FeatureSpec::load`] refuses it.

use super::hash;
use crate::aggregates::{AggFeature, Prior};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Where a categorical value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    PublisherId,
    InventoryDomain,
    InventoryCat,
    InventoryKind,
    DeviceType,
    DeviceOs,
    Country,
    LocalHour,
    LocalWeekday,
    BannerPos,
    UserId,
    UserSegment0,
    UserSegment1,
    // Candidate-level sources: keep them last (see `is_candidate`).
    Slot,
    CampaignId,
    CreativeId,
    Advertiser,
    AdCategory,
    /// Tier-1 code of the campaign category (`IAB20-18` -> `IAB20`).
    AdCategoryTier1,
    /// Relevance of the ad to the user: `1` when the tier-1 IAB code in the user's first
    /// segment equals the ad's tier-1 category, `2` for the second segment, else `0`.
    MatchSegmentCategory,
    /// Relevance of the ad to the page or app: `1` when the tier-1 code of the first
    /// inventory category equals the ad's, else `0`.
    MatchContentCategory,
}

impl Source {
    pub const COUNT: usize = Source::MatchContentCategory as usize + 1;
    /// Index of the first candidate-level source.
    pub const FIRST_CANDIDATE: usize = Source::Slot as usize;

    fn parse(name: &str) -> Option<Source> {
        Some(match name {
            "publisher.id" => Source::PublisherId,
            "inventory.domain" => Source::InventoryDomain,
            "inventory.cat" => Source::InventoryCat,
            "inventory.kind" => Source::InventoryKind,
            "device.devicetype" => Source::DeviceType,
            "device.os" => Source::DeviceOs,
            "device.geo.country" => Source::Country,
            "time.local_hour" => Source::LocalHour,
            "time.local_weekday" => Source::LocalWeekday,
            "imp.banner.pos" => Source::BannerPos,
            "user.id" => Source::UserId,
            "user.segment.0" => Source::UserSegment0,
            "user.segment.1" => Source::UserSegment1,
            "imp.slot" => Source::Slot,
            "campaign.id" => Source::CampaignId,
            "creative.id" => Source::CreativeId,
            "campaign.advertiser" => Source::Advertiser,
            "campaign.category" => Source::AdCategory,
            "campaign.category.tier1" => Source::AdCategoryTier1,
            "match.segment_category" => Source::MatchSegmentCategory,
            "match.content_category" => Source::MatchContentCategory,
            _ => return None,
        })
    }

    /// True for values that depend on the candidate creative, not on the request.
    pub fn is_candidate(self) -> bool {
        self as usize >= Source::FIRST_CANDIDATE
    }

    /// True for the match sources, whose value (0, 1 or 2) compares the candidate's
    /// category with the request's.
    pub fn is_match(self) -> bool {
        matches!(self, Source::MatchSegmentCategory | Source::MatchContentCategory)
    }
}

/// Where a numeric value comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NumSource {
    /// sin and cos of the local time of day as an angle (a full turn a day), in whole
    /// minutes: rows stay the same within a minute (`features::extract`).
    LocalHourSin,
    LocalHourCos,
    /// The imp's floor in its own currency; 0 without one.
    ImpBidfloor,
    /// What the bidder's aggregates say of the candidate's user, ad or publisher
    /// (`agg.<family>.<stat>[.<half-life>]`, [`crate::aggregates`]); rates carry their
    /// prior from the spec's `prior`.
    Aggregate(AggFeature),
}

impl NumSource {
    fn parse(name: &str, prior: Option<Prior>) -> Result<NumSource, String> {
        if name.starts_with("agg.") {
            return AggFeature::parse(name, prior).map(NumSource::Aggregate);
        }
        let source = match name {
            "time.local_hour_sin" => NumSource::LocalHourSin,
            "time.local_hour_cos" => NumSource::LocalHourCos,
            "imp.bidfloor" => NumSource::ImpBidfloor,
            _ => return Err(format!("unknown source {name:?}")),
        };
        match prior {
            Some(_) => Err(format!("{name:?} takes no prior (only agg. rates do)")),
            None => Ok(source),
        }
    }

    /// True for the aggregate sources.
    pub fn is_aggregate(&self) -> bool {
        matches!(self, NumSource::Aggregate(_))
    }
}

/// A numeric transform, applied in spec order.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Transform {
    Log1p,
    /// `ln(v / (1 - v))`, `v` clamped into `[1e-6, 1 - 1e-6]`: a rate (`agg.*.ctr`, `cvr`)
    /// on the scale a logistic model adds it on.
    Logit,
    Clip {
        min: f64,
        max: f64,
    },
    Standardise {
        mean: f64,
        std: f64,
    },
}

impl Transform {
    pub fn apply(&self, v: f64) -> f64 {
        match *self {
            Transform::Log1p => v.max(0.0).ln_1p(),
            Transform::Logit => {
                let p = v.clamp(1e-6, 1.0 - 1e-6);
                (p / (1.0 - p)).ln()
            }
            Transform::Clip { min, max } => v.clamp(min, max),
            Transform::Standardise { mean, std } => (v - mean) / std,
        }
    }
}

/// A categorical field's values: one source, or a cross of two. `S` is where a value
/// comes from ([`Source`] for served specs, a CSV column for table specs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatKind<S = Source> {
    Single(S),
    Cross(S, S),
}

#[derive(Debug, Clone)]
pub struct CatField<S = Source> {
    pub name: String,
    pub kind: CatKind<S>,
    /// Power of two.
    pub buckets: u64,
    /// First global index of this field.
    pub offset: u64,
    /// `hash::field_seed` of the name.
    pub seed: u64,
}

impl CatField {
    /// True when the value changes from one candidate to the next.
    pub fn is_candidate(&self) -> bool {
        match self.kind {
            CatKind::Single(s) => s.is_candidate(),
            CatKind::Cross(a, b) => a.is_candidate() || b.is_candidate(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NumField<N = NumSource> {
    pub name: String,
    pub source: N,
    pub transforms: Vec<Transform>,
}

/// A loaded, checked feature spec.
#[derive(Debug, Clone)]
pub struct FeatureSpec {
    pub name: String,
    pub version: u32,
    pub hash_seed: u64,
    /// Hex SHA-256 of the spec file's bytes.
    pub sha256: String,
    pub cat: Vec<CatField>,
    pub num: Vec<NumField>,
    /// Total embedding rows: every global index is below it.
    pub cardinality: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read feature spec {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("feature spec {path} is not valid JSON for a spec: {error}")]
    Parse { path: String, error: serde_json::Error },
    #[error("feature spec {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("feature spec {path} is a table spec (column: sources) and cannot be served; use it with `ctrbid features --csv` or `--criteo`")]
    TableSpec { path: String },
    #[error("feature spec {path} is an OpenRTB spec (no column: sources) and cannot read CSV input; use a table spec such as models/specs/criteo.json")]
    NotTableSpec { path: String },
}

impl SpecError {
    /// The same error, naming the file at `path`.
    fn at(self, path: String) -> SpecError {
        match self {
            SpecError::Read { error, .. } => SpecError::Read { path, error },
            SpecError::Parse { error, .. } => SpecError::Parse { path, error },
            SpecError::Invalid { reason, .. } => SpecError::Invalid { path, reason },
            SpecError::TableSpec { .. } => SpecError::TableSpec { path },
            SpecError::NotTableSpec { .. } => SpecError::NotTableSpec { path },
        }
    }
}

/// Resolves source names: the one part of loading a spec that differs between served
/// specs and table specs. Errors are reasons, without the field name.
pub(super) trait Sources {
    type Cat: Copy;
    type Num;
    /// True for table specs: every source has the form `kind:COLUMN`.
    const TABLE: bool;
    fn cat(&mut self, source: &str) -> Result<Self::Cat, String>;
    /// `prior`: the field's `prior`, which only some sources take.
    fn num(&mut self, source: &str, prior: Option<Prior>) -> Result<Self::Num, String>;
}

/// A table source has a colon; an OpenRTB source never does.
pub(super) fn is_table_source(source: &str) -> bool {
    source.contains(':')
}

/// A checked spec with its sources resolved: what [`parse`] returns.
pub(super) struct Parsed<C, N> {
    pub name: String,
    pub version: u32,
    pub hash_seed: u64,
    pub sha256: String,
    pub cat: Vec<CatField<C>>,
    pub num: Vec<NumField<N>>,
    pub cardinality: u64,
}

struct Served;

impl Sources for Served {
    type Cat = Source;
    type Num = NumSource;
    const TABLE: bool = false;
    fn cat(&mut self, source: &str) -> Result<Source, String> {
        Source::parse(source).ok_or_else(|| format!("unknown source {source:?}"))
    }
    fn num(&mut self, source: &str, prior: Option<Prior>) -> Result<NumSource, String> {
        NumSource::parse(source, prior)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    name: String,
    version: u32,
    hash_seed: u64,
    categorical: Vec<CatFieldFile>,
    numeric: Vec<NumFieldFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatFieldFile {
    name: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    cross: Option<[String; 2]>,
    buckets: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NumFieldFile {
    name: String,
    source: String,
    #[serde(default)]
    transform: Vec<Transform>,
    /// A rate's prior (`agg.*.ctr.*`, `agg.*.cvr.*`).
    #[serde(default)]
    prior: Option<PriorFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriorFile {
    mean: f64,
    strength: f64,
}

impl FeatureSpec {
    /// Loads a spec for serving; refuses a table spec ([`SpecError::TableSpec`]).
    pub fn load(path: &Path) -> Result<FeatureSpec, SpecError> {
        load(path, &mut Served).map(FeatureSpec::from_parsed)
    }

    /// Parses and checks a spec from the bytes of its file.
    pub fn from_bytes(bytes: &[u8]) -> Result<FeatureSpec, SpecError> {
        parse(bytes, &mut Served).map(FeatureSpec::from_parsed)
    }

    fn from_parsed(p: Parsed<Source, NumSource>) -> FeatureSpec {
        FeatureSpec {
            name: p.name,
            version: p.version,
            hash_seed: p.hash_seed,
            sha256: p.sha256,
            cat: p.cat,
            num: p.num,
            cardinality: p.cardinality,
        }
    }
}

/// Reads a spec file's bytes and checks everything but what its sources mean, which
/// `sources` resolves. Errors carry an empty path; [`SpecError::at`] fills it in.
pub(super) fn load<R: Sources>(path: &Path, sources: &mut R) -> Result<Parsed<R::Cat, R::Num>, SpecError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| SpecError::Read { path: name.clone(), error })?;
    parse(&bytes, sources).map_err(|e| e.at(name))
}

/// Parses and checks a spec's bytes, resolving its sources with `sources`.
pub(super) fn parse<R: Sources>(bytes: &[u8], sources: &mut R) -> Result<Parsed<R::Cat, R::Num>, SpecError> {
    let file: SpecFile =
        serde_json::from_slice(bytes).map_err(|error| SpecError::Parse { path: String::new(), error })?;
    let table = file.categorical.iter().filter_map(|f| f.source.as_deref()).any(is_table_source)
        || file.numeric.iter().any(|f| is_table_source(&f.source));
    match (table, R::TABLE) {
        (true, false) => return Err(SpecError::TableSpec { path: String::new() }),
        (false, true) => return Err(SpecError::NotTableSpec { path: String::new() }),
        _ => {}
    }
    let invalid = |reason: String| SpecError::Invalid { path: String::new(), reason };
    let mut cat: Vec<CatField<R::Cat>> = Vec::with_capacity(file.categorical.len());
    let mut offset = 0u64;
    for f in file.categorical {
        if cat.iter().any(|c| c.name == f.name) {
            return Err(invalid(format!("field {:?} appears twice", f.name)));
        }
        if !f.buckets.is_power_of_two() {
            return Err(invalid(format!("field {:?}: buckets {} is not a power of two", f.name, f.buckets)));
        }
        let kind = match (&f.source, &f.cross) {
            (Some(src), None) => {
                CatKind::Single(sources.cat(src).map_err(|reason| invalid(format!("field {:?}: {reason}", f.name)))?)
            }
            (None, Some([a, b])) => {
                let single = |n: &str| {
                    cat.iter()
                        .find_map(|c| match c.kind {
                            CatKind::Single(s) if c.name == n => Some(s),
                            _ => None,
                        })
                        .ok_or_else(|| invalid(format!("cross {:?} names {n:?}, not an earlier single field", f.name)))
                };
                CatKind::Cross(single(a)?, single(b)?)
            }
            _ => return Err(invalid(format!("field {:?} needs exactly one of source and cross", f.name))),
        };
        let seed = hash::field_seed(file.hash_seed, &f.name);
        cat.push(CatField { name: f.name, kind, buckets: f.buckets, offset, seed });
        offset = offset.checked_add(f.buckets).ok_or_else(|| invalid("bucket counts overflow".to_string()))?;
    }
    let mut num = Vec::with_capacity(file.numeric.len());
    for f in file.numeric {
        let prior = f.prior.map(|p| Prior { mean: p.mean, strength: p.strength });
        let source =
            sources.num(&f.source, prior).map_err(|reason| invalid(format!("numeric field {:?}: {reason}", f.name)))?;
        for t in &f.transform {
            if let Transform::Standardise { std, .. } = t {
                if !(std.is_finite() && *std > 0.0) {
                    return Err(invalid(format!("numeric field {:?}: standardise needs std > 0", f.name)));
                }
            }
        }
        num.push(NumField { name: f.name, source, transforms: f.transform });
    }
    if cat.is_empty() {
        return Err(invalid("no categorical fields".to_string()));
    }
    let sha256 = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    Ok(Parsed {
        name: file.name,
        version: file.version,
        hash_seed: file.hash_seed,
        sha256,
        cat,
        num,
        cardinality: offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_loads_with_running_offsets() {
        let spec =
            FeatureSpec::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/feature_spec.json"))).unwrap();
        let mut expect = 0;
        for f in &spec.cat {
            assert_eq!(f.offset, expect, "{}", f.name);
            expect += f.buckets;
        }
        assert_eq!(spec.cardinality, expect);
        assert_eq!(spec.sha256.len(), 64);
    }

    fn check_invalid(json: &str, needle: &str) {
        let err = FeatureSpec::from_bytes(json.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(needle), "{err} should mention {needle}");
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let head = r#"{"name":"t","version":1,"hash_seed":1,"numeric":[],"categorical":"#;
        check_invalid(&format!(r#"{head}[{{"name":"a","source":"device.os","buckets":100}}]}}"#), "power of two");
        check_invalid(&format!(r#"{head}[{{"name":"a","source":"nope","buckets":64}}]}}"#), "unknown source");
        check_invalid(
            &format!(r#"{head}[{{"name":"a","cross":["x","y"],"buckets":64}}]}}"#),
            "not an earlier single field",
        );
        check_invalid(
            &format!(
                r#"{head}[{{"name":"a","source":"device.os","buckets":64}},{{"name":"a","source":"device.os","buckets":64}}]}}"#
            ),
            "appears twice",
        );
        check_invalid(
            &format!(r#"{head}[{{"name":"a","source":"column:C1","buckets":64}}]}}"#),
            "is a table spec (column: sources) and cannot be served",
        );
    }

    fn with_numeric(numeric: &str) -> String {
        format!(
            r#"{{"name":"t","version":1,"hash_seed":1,"categorical":[{{"name":"a","source":"device.os","buckets":64}}],"numeric":[{numeric}]}}"#
        )
    }

    #[test]
    fn transforms_apply_in_order() {
        let logit = Transform::Logit;
        assert_eq!(logit.apply(0.5), 0.0);
        assert!((logit.apply(0.018) - (0.018f64 / 0.982).ln()).abs() < 1e-12);
        assert_eq!(logit.apply(0.0), logit.apply(1e-6), "clamped, never -inf");
        assert!(logit.apply(1.0).is_finite());
        let spec = FeatureSpec::from_bytes(
            with_numeric(
                r#"{"name":"u","source":"agg.user.ctr.7d","prior":{"mean":0.02,"strength":50},
                    "transform":[{"op":"logit"},{"op":"standardise","mean":-4.0,"std":0.5}]}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        let applied = spec.num[0].transforms.iter().fold(0.02f64, |v, t| t.apply(v));
        assert!((applied - ((0.02f64 / 0.98).ln() + 4.0) / 0.5).abs() < 1e-12, "{applied}");
    }

    #[test]
    fn aggregate_sources_parse_with_their_priors() {
        let spec = FeatureSpec::from_bytes(
            with_numeric(
                r#"{"name":"u","source":"agg.user.ctr.7d","prior":{"mean":0.01,"strength":50},"transform":[{"op":"log1p"}]},
                   {"name":"s","source":"agg.creative.since_click"}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        let NumSource::Aggregate(f) = spec.num[0].source else { panic!("{:?}", spec.num[0].source) };
        assert_eq!(f.prior, Some(Prior { mean: 0.01, strength: 50.0 }));
        assert!(spec.num[1].source.is_aggregate() && !matches!(spec.num[1].source, NumSource::ImpBidfloor));
        check_invalid(&with_numeric(r#"{"name":"u","source":"agg.user.ctr.7d"}"#), "needs a prior");
        check_invalid(
            &with_numeric(r#"{"name":"f","source":"imp.bidfloor","prior":{"mean":0.1,"strength":1}}"#),
            "takes no prior",
        );
        check_invalid(
            &with_numeric(r#"{"name":"u","source":"agg.user.ctr.7d","prior":{"mean":0.1,"strength":1,"x":2}}"#),
            "unknown field",
        );
    }
}
