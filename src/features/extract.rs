//! Turning (request, imp, candidate) into one model input row.
//!
//! Work is split by how often it changes: [`Extractor::request`] hashes the
//! request-level values once per request, [`Extractor::imp`] fills the part of the row
//! that is the same for every candidate of an imp, and [`Extractor::write_row`] only
//! computes the candidate-dependent fields. What depends on the creative alone is done
//! once per catalog load ([`Extractor::candidate_keys`]): its values' hashes and the
//! indices of the fields made of creative values only (`campaign`, `creative`, ...).
//! Per row there remain the match fields (a table lookup: their value is 0, 1 or 2)
//! and the crosses of a creative value with a request value, hashed per row, and the
//! aggregate numeric fields (`agg.*`), read per row from the store's [`Snapshot`] the
//! caller passes (none: every entity reads as never seen).

use super::hash::{bucket, bucket_cross, value_hash, value_hash_int, value_hash_lower};
use super::spec::{CatKind, FeatureSpec, NumSource, Source};
use crate::aggregates::{id_hash, AggFeature, Audience, Counts, EntityKeys, Family, Snapshot};
use crate::catalog::{Campaign, Creative, Format};
use crate::openrtb::{BidRequest, Imp};

const CANDIDATE_SOURCES: usize = Source::COUNT - Source::FIRST_CANDIDATE;
const SECONDS_PER_DAY: i64 = 86_400;

/// The local clock's resolution for the time-of-day features (`time.local_hour_sin`,
/// `time.local_hour_cos`): whole minutes. A row then stays byte-identical for up to a
/// minute, which is what lets the score cache answer an impression offered again
/// seconds later (at second resolution it missed on every repeat a second or more
/// apart). The angle moves by at most 2*pi/1440 = 0.0044 rad within a minute: on the
/// default model, against second resolution, pCTR moved by 0.03 % on average and 0.15 %
/// at most (200,000 simulator rows, `ctrbid features` at both resolutions).
const TIME_OF_DAY_RESOLUTION_S: i64 = 60;

/// Fields made of creative values only whose indices [`CandidateKeys`] holds; a spec
/// with more has the rest hashed per row, as crosses with request values are.
const MAX_CREATIVE_FIELDS: usize = 16;

/// What one creative contributes to its rows, computed once per catalog load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandidateKeys {
    /// Value hashes of the candidate-level sources, in `Source` order from
    /// `Source::FIRST_CANDIDATE` (the match sources' are filled per row).
    vh: [u64; CANDIDATE_SOURCES],
    /// The global index of each of the extractor's `creative_fields`, in that order.
    indices: [i64; MAX_CREATIVE_FIELDS],
    /// [`id_hash`]es of the campaign id, the creative id and the campaign's category:
    /// the creative's part of its aggregates' keys.
    agg: [u64; 3],
}

/// Value hashes of the tier-1 IAB codes a request carries, for the match sources;
/// `None` where the request has no such code (it then matches nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tier1 {
    segments: [Option<u64>; 2],
    content: Option<u64>,
}

/// Request-level value hashes and the local clock.
#[derive(Debug, Clone)]
pub struct RequestContext {
    vh: [u64; Source::COUNT],
    tier1: Tier1,
    /// Seconds since local midnight, `0..86400`, in whole minutes
    /// ([`TIME_OF_DAY_RESOLUTION_S`]).
    local_seconds: i64,
    /// The auction time, Unix seconds: what the aggregates decay to.
    now_unix: i64,
    /// [`id_hash`]es of the personal user id and of the publisher id, for the aggregates.
    agg_user: Option<u64>,
    agg_publisher: Option<u64>,
}

/// Request- and imp-level value hashes: what the candidate fields of one imp's rows
/// are computed from.
#[derive(Debug, Clone, Copy)]
struct ImpKeys {
    vh: [u64; Source::COUNT],
    tier1: Tier1,
    now_unix: i64,
    agg_user: Option<u64>,
    agg_publisher: Option<u64>,
}

/// The part of a row shared by every candidate of one imp.
#[derive(Debug, Clone)]
pub struct ImpContext {
    keys: ImpKeys,
    /// Row template: request- and imp-level fields filled, candidate fields zero.
    cat: Vec<i64>,
    num: Vec<f32>,
}

/// Builds feature rows from a spec. Cheap to share: holds only the spec and indices.
///
/// Invariant: every field that depends on the candidate is in exactly one of
/// `creative_fields`, `match_fields` and `row_fields`; the others are filled by the
/// imp's template.
#[derive(Debug, Clone)]
pub struct Extractor {
    spec: FeatureSpec,
    /// Indices into `spec.cat` of the fields made of creative-level values only, their
    /// global indices held per creative ([`CandidateKeys::indices`]); at most
    /// [`MAX_CREATIVE_FIELDS`].
    creative_fields: Vec<usize>,
    /// Single fields over a match source: the field, its source, and its global index
    /// for each match value (0, 1, 2).
    match_fields: Vec<(usize, Source, [i64; 3])>,
    /// The other candidate fields (a creative value crossed with a request, imp or
    /// match value), hashed per row.
    row_fields: Vec<usize>,
    /// Value hashes of the match values 0, 1 and 2.
    match_hashes: [u64; 3],
    /// Numeric fields read from the aggregates, per row: index into `spec.num`.
    agg_fields: Vec<(usize, AggFeature)>,
    /// Their indices alone, in the same order.
    agg_columns: Vec<usize>,
}

impl Extractor {
    pub fn new(spec: FeatureSpec) -> Extractor {
        let seed = spec.hash_seed;
        let match_hashes = [0, 1, 2].map(|v| value_hash_int(seed, v));
        let (mut creative_fields, mut match_fields, mut row_fields) = (Vec::new(), Vec::new(), Vec::new());
        let by_creative = |s: Source| s.is_candidate() && !s.is_match();
        for (i, f) in spec.cat.iter().enumerate() {
            match f.kind {
                _ if !f.is_candidate() => {}
                CatKind::Single(s) if s.is_match() => {
                    let mut vh = [0u64; Source::COUNT];
                    let table = match_hashes.map(|h| {
                        vh[s as usize] = h;
                        index(f.offset, f.seed, f.kind, f.buckets, &vh)
                    });
                    match_fields.push((i, s, table));
                }
                CatKind::Single(a) if by_creative(a) && creative_fields.len() < MAX_CREATIVE_FIELDS => {
                    creative_fields.push(i)
                }
                CatKind::Cross(a, b)
                    if by_creative(a) && by_creative(b) && creative_fields.len() < MAX_CREATIVE_FIELDS =>
                {
                    creative_fields.push(i)
                }
                _ => row_fields.push(i),
            }
        }
        let agg_fields = (spec.num.iter().enumerate())
            .filter_map(|(i, f)| match f.source {
                NumSource::Aggregate(a) => Some((i, a)),
                _ => None,
            })
            .collect::<Vec<_>>();
        let agg_columns = agg_fields.iter().map(|&(i, _)| i).collect();
        Extractor { spec, creative_fields, match_fields, row_fields, match_hashes, agg_fields, agg_columns }
    }

    pub fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    /// Whether the spec has aggregate fields (`agg.*`).
    pub fn reads_aggregates(&self) -> bool {
        !self.agg_fields.is_empty()
    }

    /// The numeric row's aggregate fields: their indices in a row of [`Self::num_width`].
    pub fn aggregate_columns(&self) -> &[usize] {
        &self.agg_columns
    }

    /// Width of the categorical row.
    pub fn cat_width(&self) -> usize {
        self.spec.cat.len()
    }

    /// Width of the numeric row.
    pub fn num_width(&self) -> usize {
        self.spec.num.len()
    }

    /// Hashes a creative's candidate-level values.
    pub fn candidate_keys(&self, campaign: &Campaign, creative: &Creative) -> CandidateKeys {
        let seed = self.spec.hash_seed;
        let slot = match creative.format {
            Format::Banner { w, h } => value_hash(seed, format!("{w}x{h}").as_bytes()),
            other => value_hash(seed, other.kind().as_bytes()),
        };
        let mut keys = [0u64; CANDIDATE_SOURCES];
        let mut set = |s: Source, v: u64| keys[s as usize - Source::FIRST_CANDIDATE] = v;
        set(Source::Slot, slot);
        set(Source::CampaignId, value_hash(seed, campaign.id.as_bytes()));
        set(Source::CreativeId, value_hash(seed, creative.id.as_bytes()));
        set(Source::Advertiser, value_hash(seed, campaign.advertiser.as_bytes()));
        set(Source::AdCategory, value_hash(seed, campaign.category.as_bytes()));
        set(Source::AdCategoryTier1, value_hash(seed, tier1(&campaign.category).unwrap_or_default().as_bytes()));
        // The match sources are filled per row by `candidate_fields`.
        let mut vh = [0u64; Source::COUNT];
        vh[Source::FIRST_CANDIDATE..].copy_from_slice(&keys);
        let mut indices = [0i64; MAX_CREATIVE_FIELDS];
        for (slot, &i) in indices.iter_mut().zip(&self.creative_fields) {
            let f = &self.spec.cat[i];
            *slot = index(f.offset, f.seed, f.kind, f.buckets, &vh);
        }
        let agg = [id_hash(&campaign.id), id_hash(&creative.id), id_hash(&campaign.category)];
        CandidateKeys { vh: keys, indices, agg }
    }

    /// Hashes the request-level values; `now_unix` is the auction time in Unix seconds.
    pub fn request(&self, req: &BidRequest<'_>, now_unix: i64) -> RequestContext {
        let seed = self.spec.hash_seed;
        let hash = |v: Option<&str>| value_hash(seed, v.unwrap_or_default().as_bytes());
        let local = now_unix + i64::from(req.utc_offset_minutes()) * 60;
        let local_seconds = local.rem_euclid(SECONDS_PER_DAY) / TIME_OF_DAY_RESOLUTION_S * TIME_OF_DAY_RESOLUTION_S;
        // User-level data only where the request allows it (COPPA, limited ad tracking,
        // GDPR without consent: see `BidRequest::may_personalise`); else as if absent.
        let personal = req.may_personalise();
        let mut segments = req.segments().filter(move |_| personal);
        let mut vh = [0u64; Source::COUNT];
        vh[Source::PublisherId as usize] = hash(req.publisher_id());
        vh[Source::InventoryDomain as usize] = hash(req.inventory_domain());
        vh[Source::InventoryCat as usize] = hash(req.inventory_cats().first().map(|c| c.as_ref()));
        let kind = match (&req.site, &req.app, &req.dooh) {
            (Some(_), _, _) => "site",
            (None, Some(_), _) => "app",
            (None, None, Some(_)) => "dooh",
            (None, None, None) => "",
        };
        vh[Source::InventoryKind as usize] = hash(Some(kind));
        vh[Source::DeviceType as usize] = match req.device_type() {
            Some(t) => value_hash_int(seed, i64::from(t)),
            None => hash(None),
        };
        vh[Source::DeviceOs as usize] = value_hash_lower(seed, req.os().unwrap_or_default());
        vh[Source::Country as usize] = value_hash_lower(seed, req.country().unwrap_or_default());
        vh[Source::LocalHour as usize] = value_hash_int(seed, local_seconds / 3600);
        // 1970-01-01 was a Thursday; Monday is 0.
        vh[Source::LocalWeekday as usize] = value_hash_int(seed, (local.div_euclid(SECONDS_PER_DAY) + 3).rem_euclid(7));
        vh[Source::UserId as usize] = hash(req.personal_user_id());
        let (segment0, segment1) = (segments.next(), segments.next());
        vh[Source::UserSegment0 as usize] = hash(segment0);
        vh[Source::UserSegment1 as usize] = hash(segment1);
        let tier1_hash = |v: Option<&str>| v.and_then(tier1).map(|t| value_hash(seed, t.as_bytes()));
        let tier1 = Tier1 {
            segments: [tier1_hash(segment0), tier1_hash(segment1)],
            content: tier1_hash(req.inventory_cats().first().map(|c| c.as_ref())),
        };
        let audience = Audience::of(req);
        RequestContext {
            vh,
            tier1,
            local_seconds,
            now_unix,
            agg_user: audience.user,
            agg_publisher: audience.publisher,
        }
    }

    /// Fills the imp-level values and the candidate-independent part of the row.
    pub fn imp(&self, rc: &RequestContext, imp: &Imp<'_>) -> ImpContext {
        let mut cat = vec![0i64; self.spec.cat.len()];
        let mut num = vec![0f32; self.spec.num.len()];
        let keys = self.template(rc, imp, &mut cat, &mut num);
        ImpContext { keys, cat, num }
    }

    /// Writes one candidate's row. `cat` and `num` are exactly the row widths.
    pub fn write_row(
        &self,
        ic: &ImpContext,
        keys: &CandidateKeys,
        agg: Option<&Snapshot<'_>>,
        cat: &mut [i64],
        num: &mut [f32],
    ) {
        cat.copy_from_slice(&ic.cat);
        num.copy_from_slice(&ic.num);
        self.candidate_fields(&ic.keys, keys, cat);
        self.aggregate_fields(&ic.keys, keys, agg, num);
    }

    /// Appends the rows of all of one imp's candidates (`keys`, in order) to `cat` and
    /// `num`: the imp's template is written once and copied for the other rows, then
    /// each row gets its candidate fields. Allocates only where `cat` and `num` lack
    /// the capacity. The same rows as [`Extractor::imp`] and [`Extractor::write_row`]
    /// per candidate.
    pub fn append_imp_rows<'k>(
        &self,
        rc: &RequestContext,
        imp: &Imp<'_>,
        keys: impl ExactSizeIterator<Item = &'k CandidateKeys> + Clone,
        agg: Option<&Snapshot<'_>>,
        cat: &mut Vec<i64>,
        num: &mut Vec<f32>,
    ) {
        let (f, d) = (self.cat_width(), self.num_width());
        let rows = keys.len();
        if rows == 0 {
            return;
        }
        let (c0, n0) = (cat.len(), num.len());
        cat.reserve(rows * f);
        num.reserve(rows * d);
        cat.resize(c0 + f, 0);
        num.resize(n0 + d, 0.0);
        let ik = self.template(rc, imp, &mut cat[c0..], &mut num[n0..]);
        for _ in 1..rows {
            cat.extend_from_within(c0..c0 + f);
            num.extend_from_within(n0..n0 + d);
        }
        if !self.agg_fields.is_empty() {
            for (row, k) in num[n0..].chunks_exact_mut(d).zip(keys.clone()) {
                self.aggregate_fields(&ik, k, agg, row);
            }
        }
        for (row, k) in cat[c0..].chunks_exact_mut(f).zip(keys) {
            self.candidate_fields(&ik, k, row);
        }
    }

    /// Writes the request- and imp-level fields of a row into `cat` (candidate fields
    /// left as they are) and the whole `num` row; returns the hashes the candidate
    /// fields need.
    fn template(&self, rc: &RequestContext, imp: &Imp<'_>, cat: &mut [i64], num: &mut [f32]) -> ImpKeys {
        let seed = self.spec.hash_seed;
        let mut vh = rc.vh;
        vh[Source::BannerPos as usize] = match imp.banner.as_ref().and_then(|b| b.pos) {
            Some(p) => value_hash_int(seed, i64::from(p)),
            None => value_hash(seed, b""),
        };
        for (slot, field) in cat.iter_mut().zip(&self.spec.cat) {
            if !field.is_candidate() {
                *slot = index(field.offset, field.seed, field.kind, field.buckets, &vh);
            }
        }
        let angle = std::f64::consts::TAU * rc.local_seconds as f64 / SECONDS_PER_DAY as f64;
        for (slot, f) in num.iter_mut().zip(&self.spec.num) {
            let raw = match f.source {
                NumSource::LocalHourSin => angle.sin(),
                NumSource::LocalHourCos => angle.cos(),
                NumSource::ImpBidfloor => imp.bidfloor.unwrap_or(0.0),
                // Per candidate: `aggregate_fields`.
                NumSource::Aggregate(_) => 0.0,
            };
            *slot = f.transforms.iter().fold(raw, |v, t| t.apply(v)) as f32;
        }
        ImpKeys { vh, tier1: rc.tier1, now_unix: rc.now_unix, agg_user: rc.agg_user, agg_publisher: rc.agg_publisher }
    }

    /// Writes a row's aggregate numeric fields from `agg` (none: as if the store were
    /// empty), each decayed to the auction and transformed as the spec says.
    fn aggregate_fields(&self, ik: &ImpKeys, keys: &CandidateKeys, agg: Option<&Snapshot<'_>>, num: &mut [f32]) {
        let [campaign, creative, ad_category] = keys.agg;
        let entity = EntityKeys { user: ik.agg_user, publisher: ik.agg_publisher, campaign, creative, ad_category };
        // Each family's entity is hashed and looked up once per row, however many of its
        // features the spec reads.
        let mut looked_up: [Option<Option<Counts>>; Family::ALL.len()] = [None; Family::ALL.len()];
        for &(i, feature) in &self.agg_fields {
            let counts = *looked_up[feature.family as usize]
                .get_or_insert_with(|| agg.zip(entity.key(feature.family)).and_then(|(s, key)| s.counts(key)));
            let raw = feature.value(counts.as_ref(), ik.now_unix);
            num[i] = self.spec.num[i].transforms.iter().fold(raw, |v, t| t.apply(v)) as f32;
        }
    }

    /// Writes the candidate-dependent fields of one row: the creative's own indices, the
    /// match fields from their tables, and the crosses with request values hashed.
    fn candidate_fields(&self, ik: &ImpKeys, keys: &CandidateKeys, cat: &mut [i64]) {
        for (&i, &v) in self.creative_fields.iter().zip(&keys.indices) {
            cat[i] = v;
        }
        let ad = Some(keys.vh[Source::AdCategoryTier1 as usize - Source::FIRST_CANDIDATE]);
        let segment_match = match ik.tier1.segments {
            [first, _] if first.is_some() && first == ad => 1,
            [_, second] if second.is_some() && second == ad => 2,
            _ => 0,
        };
        let content_match = usize::from(ik.tier1.content.is_some() && ik.tier1.content == ad);
        let match_value = |s: Source| if s == Source::MatchSegmentCategory { segment_match } else { content_match };
        for &(i, source, table) in &self.match_fields {
            cat[i] = table[match_value(source)];
        }
        if self.row_fields.is_empty() {
            return;
        }
        let mut vh = ik.vh;
        vh[Source::FIRST_CANDIDATE..].copy_from_slice(&keys.vh);
        vh[Source::MatchSegmentCategory as usize] = self.match_hashes[segment_match];
        vh[Source::MatchContentCategory as usize] = self.match_hashes[content_match];
        for &i in &self.row_fields {
            let f = &self.spec.cat[i];
            cat[i] = index(f.offset, f.seed, f.kind, f.buckets, &vh);
        }
    }
}

/// The tier-1 IAB code in a category or segment id: from `IAB` up to the first `-`
/// (`IAB20-18` -> `IAB20`, `seg-IAB7` -> `IAB7`); `None` without one.
fn tier1(id: &str) -> Option<&str> {
    let start = id.find("IAB")?;
    let code = &id[start..];
    let code = code.split_once('-').map_or(code, |(t, _)| t);
    (code.len() > 3).then_some(code)
}

#[inline]
fn index(offset: u64, seed: u64, kind: CatKind, buckets: u64, vh: &[u64; Source::COUNT]) -> i64 {
    let b = match kind {
        CatKind::Single(s) => bucket(seed, vh[s as usize], buckets),
        CatKind::Cross(a, b) => bucket_cross(seed, vh[a as usize], vh[b as usize], buckets),
    };
    // `cardinality` fits comfortably in i64: specs hold millions of rows, not 2^63.
    (offset + b) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::fixtures;
    use std::path::Path;

    fn extractor() -> Extractor {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/feature_spec.json"));
        Extractor::new(FeatureSpec::load(path).unwrap())
    }

    fn campaign() -> Campaign {
        campaign_in("IAB2")
    }

    fn campaign_in(category: &str) -> Campaign {
        Campaign {
            advertiser: "adv-1".into(),
            adomain: "brand.example".into(),
            ..fixtures::campaign("cmp-1", category)
        }
    }

    fn creative(w: u32) -> Creative {
        fixtures::creative(&format!("cr-{w}"), "cmp-1", Format::Banner { w, h: 250 })
    }

    fn row(ex: &Extractor, body: &str, now: i64, cr: &Creative) -> (Vec<i64>, Vec<f32>) {
        row_for(ex, body, now, &campaign(), cr)
    }

    fn row_for(ex: &Extractor, body: &str, now: i64, cmp: &Campaign, cr: &Creative) -> (Vec<i64>, Vec<f32>) {
        let mut buf = body.as_bytes().to_vec();
        let req = crate::openrtb::parse(&mut buf).unwrap();
        let rc = ex.request(&req, now);
        let ic = ex.imp(&rc, &req.imp[0]);
        let keys = ex.candidate_keys(cmp, cr);
        let mut cat = vec![0; ex.cat_width()];
        let mut num = vec![0.0; ex.num_width()];
        ex.write_row(&ic, &keys, None, &mut cat, &mut num);
        (cat, num)
    }

    /// The allocation-free path the bidder uses writes the rows the per-row path writes.
    #[test]
    fn imp_rows_at_once_equal_rows_one_by_one() {
        let ex = extractor();
        let mut buf = BODY.as_bytes().to_vec();
        let req = crate::openrtb::parse(&mut buf).unwrap();
        let rc = ex.request(&req, 1_767_600_000);
        let candidates: Vec<CandidateKeys> = [("IAB2", 300), ("IAB7", 728), ("IAB20-3", 160)]
            .iter()
            .map(|&(cat, w)| ex.candidate_keys(&campaign_in(cat), &creative(w)))
            .collect();
        let (f, d) = (ex.cat_width(), ex.num_width());
        // Appended after what the buffers already hold, which stays as it was.
        let (mut cat, mut num) = (vec![-1; f], vec![-1.0; d]);
        ex.append_imp_rows(&rc, &req.imp[0], candidates.iter(), None, &mut cat, &mut num);
        assert_eq!((cat.len(), num.len()), (4 * f, 4 * d));
        assert!(cat[..f].iter().all(|&v| v == -1) && num[..d].iter().all(|&v| v == -1.0));
        let (cat, num) = (&cat[f..], &num[d..]);
        let ic = ex.imp(&rc, &req.imp[0]);
        for (r, keys) in candidates.iter().enumerate() {
            let (mut c, mut n) = (vec![0; f], vec![0.0; d]);
            ex.write_row(&ic, keys, None, &mut c, &mut n);
            assert_eq!((&cat[r * f..(r + 1) * f], &num[r * d..(r + 1) * d]), (&c[..], &n[..]), "row {r}");
        }
        assert_ne!(cat[..f], cat[f..2 * f], "the candidates differ");
    }

    const BODY: &str = r#"{"id":"r","imp":[{"id":"1","banner":{"w":300,"h":250,"pos":1},"bidfloor":0.5}],
        "site":{"domain":"news.example","cat":["IAB12"],"publisher":{"id":"p1"}},
        "device":{"devicetype":4,"os":"iOS","geo":{"country":"USA","utcoffset":-300}},
        "user":{"id":"u1","data":[{"segment":[{"id":"seg-IAB2"},{"id":"seg-IAB7"}]}]}}"#;

    /// The default spec with three aggregate fields appended to its numeric ones.
    fn extractor_with_aggregates() -> Extractor {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/feature_spec.json"));
        let json = std::fs::read_to_string(path).unwrap().replace(
            r#""numeric": ["#,
            r#""numeric": [
                {"name": "user_ctr", "source": "agg.user.ctr.1d", "prior": {"mean": 0.01, "strength": 100}},
                {"name": "pub_cmp_imps", "source": "agg.publisher_campaign.impressions.1h", "transform": [{"op": "log1p"}]},
                {"name": "creative_since_click", "source": "agg.creative.since_click"},"#,
        );
        Extractor::new(FeatureSpec::from_bytes(json.as_bytes()).unwrap())
    }

    #[test]
    fn aggregate_fields_read_the_snapshot_for_each_candidate() {
        use crate::aggregates::{AggEvent, AggregateStore, Outcome};
        let ex = extractor_with_aggregates();
        let now = 1_767_600_000;
        let mut buf = BODY.as_bytes().to_vec();
        let req = crate::openrtb::parse(&mut buf).unwrap();
        let rc = ex.request(&req, now);
        let (shown, other) = (creative(300), creative(728));
        let keys = [ex.candidate_keys(&campaign(), &shown), ex.candidate_keys(&campaign(), &other)];
        // u1 saw cmp-1's cr-300 on p1 four times an hour ago and clicked once, 90 s ago.
        let store = AggregateStore::new(1 << 10);
        let seen = EntityKeys {
            user: Some(id_hash("u1")),
            publisher: Some(id_hash("p1")),
            campaign: id_hash("cmp-1"),
            creative: id_hash("cr-300"),
            ad_category: id_hash("IAB2"),
        };
        for _ in 0..4 {
            store.apply(&AggEvent { ts_s: now - 3_600, outcome: Outcome::Impression, keys: seen });
        }
        store.apply(&AggEvent { ts_s: now - 90, outcome: Outcome::Click, keys: seen });
        let (f, d) = (ex.cat_width(), ex.num_width());
        let (mut cat, mut num) = (Vec::new(), Vec::new());
        store.read(|snap| {
            cat.clear();
            num.clear();
            ex.append_imp_rows(&rc, &req.imp[0], keys.iter(), Some(snap), &mut cat, &mut num);
        });
        assert_eq!((cat.len(), num.len()), (2 * f, 2 * d));
        // At the 1 d half-life: the click 90 s old, the impressions an hour old.
        let user_ctr_1d = (2f64.powf(-90.0 / 86_400.0) + 100.0 * 0.01) / (4.0 * 2f64.powf(-1.0 / 24.0) + 100.0);
        let pub_cmp = (4.0f64 * 0.5 + 0.0).ln_1p(); // 4 impressions an hour old at a 1 h half-life
        assert!((f64::from(num[0]) - user_ctr_1d).abs() < 1e-7, "{} vs {user_ctr_1d}", num[0]);
        assert!((f64::from(num[1]) - pub_cmp).abs() < 1e-6, "{}", num[1]);
        assert_eq!(num[2], 90.0, "the creative was clicked 90 s ago");
        // The other creative shares user, publisher and campaign but was never clicked.
        assert_eq!((num[d], num[d + 1]), (num[0], num[1]));
        assert_eq!(f64::from(num[d + 2]), crate::aggregates::SINCE_CLICK_CAP_S);
        // The per-row path writes the same row; without a snapshot, the never-seen values.
        let ic = ex.imp(&rc, &req.imp[0]);
        let (mut c, mut n) = (vec![0; f], vec![0.0; d]);
        store.read(|snap| ex.write_row(&ic, &keys[0], Some(snap), &mut c, &mut n));
        assert_eq!((&c[..], &n[..]), (&cat[..f], &num[..d]));
        ex.write_row(&ic, &keys[0], None, &mut c, &mut n);
        assert_eq!((n[0], n[1], f64::from(n[2])), (0.01, 0.0, crate::aggregates::SINCE_CLICK_CAP_S));
        assert_eq!(n[3..], num[3..d], "the other numeric fields do not depend on the store");
    }

    #[test]
    fn indices_fall_inside_their_fields() {
        let ex = extractor();
        let (cat, _) = row(&ex, BODY, 1_767_571_200, &creative(300));
        for (v, f) in cat.iter().zip(&ex.spec().cat) {
            assert!((f.offset as i64..(f.offset + f.buckets) as i64).contains(v), "{}", f.name);
        }
    }

    #[test]
    fn user_data_is_left_out_where_the_request_forbids_it() {
        let ex = extractor();
        let now = 1_767_571_200;
        let with_user = row(&ex, BODY, now, &creative(300)).0;
        let no_user = BODY.replace(
            r#""user":{"id":"u1","data":[{"segment":[{"id":"seg-IAB2"},{"id":"seg-IAB7"}]}]}"#,
            r#""user":{}"#,
        );
        let anonymous = row(&ex, &no_user, now, &creative(300)).0;
        assert_ne!(with_user, anonymous);
        let add = |extra: &str| BODY.replacen('{', &format!("{{{extra},"), 1);
        for forbidding in [
            add(r#""regs":{"coppa":1}"#),
            add(r#""regs":{"gdpr":1}"#),
            add(r#""regs":{"ext":{"gdpr":"1"}}"#),
            BODY.replace(r#""devicetype":4"#, r#""devicetype":4,"lmt":1"#),
            BODY.replace(r#""devicetype":4"#, r#""devicetype":4,"dnt":true"#),
        ] {
            assert_eq!(row(&ex, &forbidding, now, &creative(300)).0, anonymous, "{forbidding}");
        }
        // GDPR with a consent string (2.6 or 2.5's ext): personal data may be used.
        for allowing in [
            add(r#""regs":{"gdpr":1}"#)
                .replace(r#""user":{"id":"u1""#, r#""user":{"consent":"CPXxRfAPXxRfA","id":"u1""#),
            add(r#""regs":{"gdpr":1}"#).replace(r#""user":{"id":"u1""#, r#""user":{"ext":{"consent":"CPX"},"id":"u1""#),
            add(r#""regs":{"coppa":0,"gdpr":0}"#),
        ] {
            assert_eq!(row(&ex, &allowing, now, &creative(300)).0, with_user, "{allowing}");
        }
    }

    #[test]
    fn same_input_same_row_and_lenient_types_agree() {
        let ex = extractor();
        let a = row(&ex, BODY, 1_767_571_200, &creative(300));
        let stringy = BODY.replace("\"devicetype\":4", "\"devicetype\":\"4\"").replace("\"iOS\"", "\"ios\"");
        let b = row(&ex, &stringy, 1_767_571_200, &creative(300));
        assert_eq!(a, b);
    }

    #[test]
    fn candidate_fields_change_with_the_creative_and_request_fields_do_not() {
        let ex = extractor();
        let (a, _) = row(&ex, BODY, 1_767_571_200, &creative(300));
        let (b, _) = row(&ex, BODY, 1_767_571_200, &creative(301));
        for ((x, y), f) in a.iter().zip(&b).zip(&ex.spec().cat) {
            if f.name == "creative" || f.name == "slot" || f.name == "device_type_x_slot" {
                assert_ne!(x, y, "{}", f.name);
            } else {
                assert_eq!(x, y, "{}", f.name);
            }
        }
    }

    #[test]
    fn local_time_uses_utc_offset() {
        let ex = extractor();
        // 2026-01-05 05:00 UTC is 00:00 local at -300 minutes.
        let (_, num) = row(&ex, BODY, 1_767_571_200 + 5 * 3600, &creative(300));
        assert!((num[0] - 0.0).abs() < 1e-6 && (num[1] - 1.0).abs() < 1e-6, "{num:?}");
        assert!((num[2] - (0.5f64.ln_1p() as f32)).abs() < 1e-7);
    }

    #[test]
    fn rows_change_with_the_minute_not_the_second() {
        let ex = extractor();
        let minute = 1_767_571_200 + 7 * 3600 + 13 * 60;
        let first = row(&ex, BODY, minute, &creative(300));
        assert_eq!(row(&ex, BODY, minute + 59, &creative(300)), first, "the same minute: the same row");
        let next = row(&ex, BODY, minute + 60, &creative(300));
        assert_eq!(next.0, first.0, "the hour did not change");
        assert_ne!(next.1, first.1, "the next minute moves the time-of-day angle");
        let step = std::f32::consts::TAU / 1440.0;
        assert!((next.1[0] - first.1[0]).abs() <= step && (next.1[1] - first.1[1]).abs() <= step, "{next:?} {first:?}");
    }

    #[test]
    fn tier1_codes() {
        assert_eq!(tier1("IAB20-18"), Some("IAB20"));
        assert_eq!(tier1("IAB7"), Some("IAB7"));
        assert_eq!(tier1("seg-IAB7-2"), Some("IAB7"));
        assert_eq!(tier1("sports"), None);
        assert_eq!(tier1("IAB"), None);
        assert_eq!(tier1(""), None);
    }

    /// Every field of a row equals its index hashed straight from its sources' values,
    /// whichever way the extractor computes it (held per creative, looked up in a match
    /// table, hashed per row), on a spec with more creative fields than a creative holds
    /// and crosses of every kind.
    #[test]
    fn rows_equal_every_field_hashed_from_its_sources() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/feature_spec.json"));
        let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let fields = spec["categorical"].as_array_mut().unwrap();
        for k in 0..14 {
            fields.push(serde_json::json!({"name": format!("campaign_{k}"), "source": "campaign.id", "buckets": 1024}));
        }
        for (name, a, b) in [
            ("campaign_x_creative", "campaign", "creative"),
            ("segment_match_x_country", "segment_match", "country"),
            ("content_match_x_ad_tier1", "content_match", "ad_tier1"),
        ] {
            fields.push(serde_json::json!({"name": name, "cross": [a, b], "buckets": 2048}));
        }
        let ex = Extractor::new(FeatureSpec::from_bytes(&serde_json::to_vec(&spec).unwrap()).unwrap());
        assert_eq!(ex.creative_fields.len(), MAX_CREATIVE_FIELDS, "more creative fields than a creative holds");
        assert_eq!(ex.match_fields.len(), 2);
        let singles_per_row = ex.row_fields.iter().filter(|&&i| matches!(ex.spec.cat[i].kind, CatKind::Single(_)));
        assert_eq!(singles_per_row.count(), 6 + 14 - MAX_CREATIVE_FIELDS, "the rest are hashed per row");

        let seed = ex.spec().hash_seed;
        let mut buf = BODY.as_bytes().to_vec();
        let req = crate::openrtb::parse(&mut buf).unwrap();
        let rc = ex.request(&req, 1_767_571_200);
        let cases = [("IAB2-4", 1, 0), ("IAB7", 2, 0), ("IAB12-1", 0, 1), ("IAB20", 0, 0)];
        let keys: Vec<CandidateKeys> =
            cases.iter().map(|&(category, ..)| ex.candidate_keys(&campaign_in(category), &creative(300))).collect();
        let (mut cat, mut num) = (Vec::new(), Vec::new());
        ex.append_imp_rows(&rc, &req.imp[0], keys.iter(), None, &mut cat, &mut num);
        let ic = ex.imp(&rc, &req.imp[0]);
        for (((category, segment_match, content_match), keys), row) in
            cases.iter().zip(&keys).zip(cat.chunks_exact(ex.cat_width()))
        {
            let mut vh = ic.keys.vh;
            vh[Source::FIRST_CANDIDATE..].copy_from_slice(&keys.vh);
            vh[Source::MatchSegmentCategory as usize] = value_hash_int(seed, *segment_match);
            vh[Source::MatchContentCategory as usize] = value_hash_int(seed, *content_match);
            for (f, &got) in ex.spec().cat.iter().zip(row) {
                assert_eq!(got, index(f.offset, f.seed, f.kind, f.buckets, &vh), "{} for {category}", f.name);
            }
        }
    }

    /// The match fields hold 1 / 2 / 0 for the first / second / no segment sharing the
    /// ad's tier-1 category, and 1 / 0 for the page category.
    #[test]
    fn match_fields_compare_tier1_categories() {
        let ex = extractor();
        let field = |name: &str| ex.spec().cat.iter().position(|f| f.name == name).unwrap();
        let expected = |name: &str, v: i64| {
            let f = &ex.spec().cat[field(name)];
            (f.offset + bucket(f.seed, value_hash_int(ex.spec().hash_seed, v), f.buckets)) as i64
        };
        let (segment, content) = (field("segment_match"), field("content_match"));
        let cases = [("IAB2-4", 1, 0), ("IAB7", 2, 0), ("IAB12-1", 0, 1), ("IAB20", 0, 0), ("other", 0, 0)];
        for (category, segment_match, content_match) in cases {
            let (cat, _) = row_for(&ex, BODY, 1_767_571_200, &campaign_in(category), &creative(300));
            assert_eq!(cat[segment], expected("segment_match", segment_match), "{category}");
            assert_eq!(cat[content], expected("content_match", content_match), "{category}");
        }
    }
}
