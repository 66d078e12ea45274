//! Candidate selection: which creatives may bid on an imp.
//!
//! A creative is a candidate for an imp when (the rules the simulator's logging policy
//! uses too): its format fits the slot (banner size equals `w`/`h` or a `format[]`
//! entry; video creative duration within the imp's `minduration..=maxduration`; native
//! for native), its campaign's targeting matches the device, its campaign category is
//! not in `bcat` (`IAB2` also blocks `IAB2-3`), its `adomain` is not in `badv`, and its
//! campaign's `max_cpm` reaches the imp's floor.
//!
//! The [`Selector`] indexes creatives by slot so an imp only looks at creatives of its
//! sizes, and keeps each creative's feature keys hashed once per catalog load.

use super::{Campaign, Catalog, Creative, Format};
use crate::features::{CandidateKeys, Extractor};
use crate::openrtb::{BidRequest, Imp};
use std::collections::HashMap;

/// One creative that may bid on one imp of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Index into `request.imp`.
    pub imp: u16,
    /// Index into `catalog.creatives`.
    pub creative: u32,
}

/// All candidates of one request, grouped by imp in imp order.
pub type Candidates = Vec<Candidate>;

/// The catalog, indexed for selection. Immutable once built.
#[derive(Debug)]
pub struct Selector {
    catalog: Catalog,
    /// `campaign_of[creative]` indexes `catalog.campaigns`.
    campaign_of: Vec<u32>,
    keys: Vec<CandidateKeys>,
    by_size: HashMap<(u32, u32), Vec<u32>>,
    video: Vec<u32>,
    native: Vec<u32>,
}

impl Selector {
    /// Indexes a checked catalog (see [`Catalog::check`]).
    pub fn new(catalog: Catalog, extractor: &Extractor) -> Selector {
        let campaigns = catalog.campaign_index();
        let mut campaign_of = Vec::with_capacity(catalog.creatives.len());
        let mut keys = Vec::with_capacity(catalog.creatives.len());
        let mut by_size: HashMap<(u32, u32), Vec<u32>> = HashMap::new();
        let (mut video, mut native) = (Vec::new(), Vec::new());
        for (i, cr) in catalog.creatives.iter().enumerate() {
            let ci = campaigns[cr.campaign_id.as_str()];
            campaign_of.push(ci as u32);
            keys.push(extractor.candidate_keys(&catalog.campaigns[ci], cr));
            match cr.format {
                Format::Banner { w, h } => by_size.entry((w, h)).or_default().push(i as u32),
                Format::Video { .. } => video.push(i as u32),
                Format::Native => native.push(i as u32),
            }
        }
        drop(campaigns);
        Selector { catalog, campaign_of, keys, by_size, video, native }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn creative(&self, i: u32) -> &Creative {
        &self.catalog.creatives[i as usize]
    }

    pub fn campaign_of(&self, creative: u32) -> &Campaign {
        &self.catalog.campaigns[self.campaign_of[creative as usize] as usize]
    }

    pub fn keys(&self, creative: u32) -> &CandidateKeys {
        &self.keys[creative as usize]
    }

    /// Appends to `out` every creative that may bid on `imp` with floor `floor` (USD CPM).
    pub fn select_imp(&self, req: &BidRequest<'_>, imp_index: u16, imp: &Imp<'_>, floor: f64, out: &mut Candidates) {
        let (country, device_type, os) = (req.country(), req.device_type(), req.os());
        let mut consider = |creative: u32| {
            let campaign = self.campaign_of(creative);
            if campaign.max_cpm >= floor
                && campaign.targeting.matches(country, device_type, os)
                && !blocked(req, campaign)
            {
                out.push(Candidate { imp: imp_index, creative });
            }
        };
        if let Some(banner) = &imp.banner {
            let mut seen: [(u32, u32); 8] = [(0, 0); 8];
            for (n, size) in banner.sizes().take(seen.len()).enumerate() {
                if seen[..n].contains(&size) {
                    continue;
                }
                seen[n] = size;
                for &c in self.by_size.get(&size).map(Vec::as_slice).unwrap_or_default() {
                    consider(c);
                }
            }
        }
        if let Some(video) = &imp.video {
            let (lo, hi) = (video.minduration.unwrap_or(0), video.maxduration.unwrap_or(u32::MAX));
            for &c in &self.video {
                if let Format::Video { duration, .. } = self.creative(c).format {
                    if (lo..=hi).contains(&duration) {
                        consider(c);
                    }
                }
            }
        }
        if imp.native.is_some() {
            for &c in &self.native {
                consider(c);
            }
        }
    }
}

/// True when the request blocks the campaign's category or domain.
pub fn blocked(req: &BidRequest<'_>, campaign: &Campaign) -> bool {
    let category_blocked = req.bcat.iter().any(|b| {
        let cat = campaign.category.as_str();
        cat == b.as_ref() || (cat.len() > b.len() && cat.starts_with(b.as_ref()) && cat.as_bytes()[b.len()] == b'-')
    });
    category_blocked || req.badv.iter().any(|d| d.eq_ignore_ascii_case(&campaign.adomain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Targeting;
    use crate::features::FeatureSpec;
    use std::path::Path;

    fn selector() -> Selector {
        let camp = |id: &str, cat: &str, countries: &[&str], max_cpm: f64| Campaign {
            id: id.into(),
            advertiser: "adv".into(),
            adomain: format!("{id}.example"),
            category: cat.into(),
            goal_cpc: 1.0,
            max_cpm,
            daily_budget: 100.0,
            targeting: Targeting {
                countries: countries.iter().map(|c| c.to_string()).collect(),
                ..Targeting::default()
            },
        };
        let cr = |id: &str, cmp: &str, format: Format| Creative {
            id: id.into(),
            campaign_id: cmp.into(),
            format,
            adm: String::new(),
        };
        let catalog = Catalog {
            version: 1,
            campaigns: vec![
                camp("a", "IAB2-3", &[], 10.0),
                camp("b", "IAB7", &["USA"], 10.0),
                camp("c", "IAB9", &[], 1.0),
            ],
            creatives: vec![
                cr("a300", "a", Format::Banner { w: 300, h: 250 }),
                cr("b300", "b", Format::Banner { w: 300, h: 250 }),
                cr("c300", "c", Format::Banner { w: 300, h: 250 }),
                cr("a728", "a", Format::Banner { w: 728, h: 90 }),
                cr("av15", "a", Format::Video { w: 640, h: 480, duration: 15 }),
                cr("av30", "a", Format::Video { w: 640, h: 480, duration: 30 }),
                cr("bn", "b", Format::Native),
            ],
        };
        catalog.check().unwrap();
        let spec =
            FeatureSpec::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/feature_spec.json"))).unwrap();
        Selector::new(catalog, &Extractor::new(spec))
    }

    fn check(body: &str, expected: &[&str]) {
        let s = selector();
        let mut buf = body.as_bytes().to_vec();
        let req = crate::openrtb::parse(&mut buf).unwrap();
        let mut out = Vec::new();
        for (i, imp) in req.imp.iter().enumerate() {
            s.select_imp(&req, i as u16, imp, imp.bidfloor.unwrap_or(0.0), &mut out);
        }
        let got: Vec<&str> = out.iter().map(|c| s.creative(c.creative).id.as_str()).collect();
        assert_eq!(got, expected, "{body}");
    }

    #[test]
    fn selection_rules() {
        let usa = r#""device":{"geo":{"country":"USA"}}"#;
        check(&format!(r#"{{"imp":[{{"banner":{{"w":300,"h":250}}}}],{usa}}}"#), &["a300", "b300", "c300"]);
        check(r#"{"imp":[{"banner":{"w":300,"h":250}}]}"#, &["a300", "c300"]);
        check(&format!(r#"{{"imp":[{{"banner":{{"w":300,"h":250}},"bidfloor":2}}],{usa}}}"#), &["a300", "b300"]);
        check(
            r#"{"imp":[{"banner":{"format":[{"w":728,"h":90},{"w":300,"h":250},{"w":728,"h":90}]}}]}"#,
            &["a728", "a300", "c300"],
        );
        check(r#"{"imp":[{"banner":{"w":300,"h":250}}],"bcat":["IAB2"]}"#, &["c300"]);
        check(r#"{"imp":[{"banner":{"w":300,"h":250}}],"bcat":["IAB2-3"],"badv":["C.example"]}"#, &[]);
        check(r#"{"imp":[{"banner":{"w":300,"h":250}}],"bcat":["IAB2-31","IAB"]}"#, &["a300", "c300"]);
        check(r#"{"imp":[{"video":{"minduration":5,"maxduration":20}}]}"#, &["av15"]);
        check(r#"{"imp":[{"video":{}},{"native":{}}]}"#, &["av15", "av30"]);
        check(&format!(r#"{{"imp":[{{"native":{{}}}}],{usa}}}"#), &["bn"]);
    }
}
