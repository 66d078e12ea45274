//! Candidate selection: which creatives may bid on an imp, and through which deal.
//!
//! A creative is a candidate for an imp when (the rules the simulator's logging policy
//! uses too): its format fits the slot (banner size equals `w`/`h` or a `format[]`
//! entry; video creative duration within the imp's `minduration..=maxduration`; native
//! for native), its campaign's targeting matches the device, its campaign category is
//! not in `bcat` (`IAB2` also blocks `IAB2-3`), its `adomain` is not in `badv`, and its
//! campaign's `max_cpm` reaches the floor that applies.
//!
//! Beyond what the simulator sends, the rules real requests need: a banner's
//! `banner_type` not in `btype`; no creative attribute in the slot's `battr`; a video's
//! MIME type and VAST protocol among the player's `mimes` and `protocols` (when both
//! sides name them); a native creative that fills every required asset
//! ([`crate::openrtb::native`]); markup without plain-HTTP URLs on a `secure` imp; the
//! campaign's app not in `bapp`; and the campaign's daily budget not spent.
//!
//! Deals: an imp's deal is open to a campaign when the campaign lists the deal id, the
//! deal's `wseat` (if any) names our seat, and its `wadomain` (if any) names the
//! campaign's domain. Such a candidate bids through the deal, at the deal's floor (deal
//! floor takes precedence over the imp's). A campaign with no open deal bids in the
//! open auction at the imp floor, unless the imp is a private auction.
//!
//! The [`Selector`] indexes creatives by slot so an imp only looks at creatives of its
//! sizes, and keeps each creative's feature keys hashed once per catalog load.

use super::{Campaign, Catalog, Creative, Format};
use crate::currency::Rates;
use crate::features::{CandidateKeys, Extractor};
use crate::openrtb::native;
use crate::openrtb::{BidRequest, Imp};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// One creative that may bid on one imp of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Index into `request.imp`.
    pub imp: u16,
    /// Index into `catalog.creatives`.
    pub creative: u32,
    /// Index into the imp's `pmp.deals` when the bid goes through a deal.
    pub deal: Option<u8>,
}

/// All candidates of one request, grouped by imp in imp order.
pub type Candidates = Vec<Candidate>;

/// What an imp offers, in USD, worked out once per imp by the bid path.
#[derive(Debug, Default, Clone)]
pub struct ImpTerms {
    /// The imp's floor in USD; `None` when its currency has no rate (open auction closed to us).
    pub floor_usd: Option<f64>,
    /// Deals open to our seat: (index into `pmp.deals`, the deal's floor in USD).
    pub deals: Vec<(u8, f64)>,
    /// Only deal bids may win (`pmp.private_auction = 1`).
    pub private: bool,
}

impl ImpTerms {
    /// The terms of `imp` for a bidder with seat `seat`: floors converted to USD, and
    /// the deals whose `wseat` lets the seat in. A deal without a floor inherits the
    /// imp's; a deal floor's currency defaults to USD (OpenRTB 2.6 3.2.12).
    pub fn of(imp: &Imp<'_>, seat: &str, rates: &Rates) -> ImpTerms {
        let floor_usd = rates.floor_in_usd(imp.bidfloor.unwrap_or(0.0), imp.bidfloorcur.as_deref());
        let Some(pmp) = &imp.pmp else {
            return ImpTerms { floor_usd, deals: Vec::new(), private: false };
        };
        let mut deals = Vec::new();
        for (i, deal) in pmp.deals.iter().enumerate().take(usize::from(u8::MAX)) {
            let named = deal.id.as_deref().is_some_and(|id| !id.is_empty());
            let seat_ok = deal.wseat.is_empty() || deal.wseat.iter().any(|w| w == seat);
            let floor = match deal.bidfloor {
                Some(f) => rates.floor_in_usd(f, deal.bidfloorcur.as_deref()),
                None => floor_usd,
            };
            if let (true, true, Some(floor)) = (named, seat_ok, floor) {
                deals.push((i as u8, floor));
            }
        }
        ImpTerms { floor_usd, deals, private: pmp.private_auction == Some(true) }
    }

    /// The floor in USD a candidate bidding through `deal` must reach.
    pub fn floor_for(&self, deal: Option<u8>) -> f64 {
        match deal {
            Some(d) => self.deals.iter().find(|(i, _)| *i == d).map_or(f64::INFINITY, |(_, f)| *f),
            None => self.floor_usd.unwrap_or(f64::INFINITY),
        }
    }
}

/// What selection reads of a creative besides its campaign.
#[derive(Debug, Clone, Copy)]
struct Traits {
    /// The markup loads nothing over plain HTTP.
    secure: bool,
    /// The creative lists attributes (checked against `battr`).
    has_attr: bool,
    /// `banner_type`, 0 when none.
    banner_type: u8,
}

/// The catalog, indexed for selection. Immutable once built, except the per-campaign
/// "budget spent" flags, which the notice path sets.
#[derive(Debug)]
pub struct Selector {
    catalog: Catalog,
    /// `campaign_of[creative]` indexes `catalog.campaigns`.
    campaign_of: Vec<u32>,
    campaign_by_id: HashMap<String, u32>,
    keys: Vec<CandidateKeys>,
    /// Per creative, what selection checks, packed so a candidate costs one cache line.
    traits: Vec<Traits>,
    /// `exhausted[campaign]`: today's budget is spent; the campaign does not bid.
    exhausted: Vec<AtomicBool>,
    /// True once any campaign is exhausted (until a new day): skips the per-candidate load.
    any_exhausted: AtomicBool,
    by_size: HashMap<(u32, u32), Vec<u32>>,
    video: Vec<VideoEntry>,
    /// MIME types of video creatives; `VideoEntry::mime` indexes it (0: none given).
    video_mimes: Vec<String>,
    /// Native creatives that have assets, with their sizes precomputed.
    native: Vec<(u32, native::NativeShape)>,
}

/// A video creative as selection reads it.
#[derive(Debug, Clone, Copy)]
struct VideoEntry {
    creative: u32,
    duration: u32,
    /// VAST protocol code; 0 when none given.
    protocol: u16,
    /// Index into `Selector::video_mimes`.
    mime: u16,
}

impl Selector {
    /// Indexes a checked catalog (see [`Catalog::check`]).
    pub fn new(catalog: Catalog, extractor: &Extractor) -> Selector {
        let campaigns = catalog.campaign_index();
        let mut campaign_of = Vec::with_capacity(catalog.creatives.len());
        let mut keys = Vec::with_capacity(catalog.creatives.len());
        let mut by_size: HashMap<(u32, u32), Vec<u32>> = HashMap::new();
        let (mut video, mut native) = (Vec::new(), Vec::new());
        let mut video_mimes = vec![String::new()];
        for (i, cr) in catalog.creatives.iter().enumerate() {
            let ci = campaigns[cr.campaign_id.as_str()];
            campaign_of.push(ci as u32);
            keys.push(extractor.candidate_keys(&catalog.campaigns[ci], cr));
            match cr.format {
                Format::Banner { w, h } => by_size.entry((w, h)).or_default().push(i as u32),
                Format::Video { duration, .. } => {
                    let mime = match cr.mime.as_deref() {
                        None => 0,
                        Some(m) => match video_mimes.iter().position(|k| k.eq_ignore_ascii_case(m)) {
                            Some(k) => k,
                            None => {
                                video_mimes.push(m.to_string());
                                video_mimes.len() - 1
                            }
                        },
                    };
                    let (protocol, mime) = (cr.protocol.unwrap_or(0), u16::try_from(mime).unwrap_or(0));
                    video.push(VideoEntry { creative: i as u32, duration, protocol, mime });
                }
                Format::Native => {
                    if let Some(assets) = &cr.native {
                        native.push((i as u32, native::NativeShape::of(assets)));
                    }
                }
            }
        }
        let campaign_by_id = campaigns.into_iter().map(|(id, i)| (id.to_string(), i as u32)).collect();
        let traits = catalog
            .creatives
            .iter()
            .map(|c| Traits {
                secure: c.is_secure(),
                has_attr: !c.attr.is_empty(),
                banner_type: c.banner_type.unwrap_or(0),
            })
            .collect();
        let exhausted = catalog.campaigns.iter().map(|_| AtomicBool::new(false)).collect();
        Selector {
            catalog,
            campaign_of,
            campaign_by_id,
            keys,
            traits,
            exhausted,
            any_exhausted: AtomicBool::new(false),
            by_size,
            video,
            video_mimes,
            native,
        }
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

    /// Index of the campaign with this id.
    pub fn campaign_index(&self, id: &str) -> Option<u32> {
        self.campaign_by_id.get(id).copied()
    }

    pub fn keys(&self, creative: u32) -> &CandidateKeys {
        &self.keys[creative as usize]
    }

    /// Marks a campaign's budget spent (or not, on a new day).
    pub fn set_exhausted(&self, campaign: u32, spent: bool) {
        if let Some(flag) = self.exhausted.get(campaign as usize) {
            flag.store(spent, Ordering::Relaxed);
            if spent {
                self.any_exhausted.store(true, Ordering::Relaxed);
            }
        }
    }

    /// A new budget day: every campaign may bid again.
    pub fn clear_exhausted(&self) {
        self.any_exhausted.store(false, Ordering::Relaxed);
        for flag in &self.exhausted {
            flag.store(false, Ordering::Relaxed);
        }
    }

    /// Appends to `out` every creative that may bid on `imp` on the `terms` the bid
    /// path worked out for it.
    pub fn select_imp(
        &self,
        req: &BidRequest<'_>,
        imp_index: u16,
        imp: &Imp<'_>,
        terms: &ImpTerms,
        out: &mut Candidates,
    ) {
        let (country, device_type, os) = (req.country(), req.device_type(), req.os());
        let secure_only = imp.secure == Some(true);
        let deals = imp.pmp.as_ref().map(|p| p.deals.as_slice()).unwrap_or_default();
        if terms.private && terms.deals.is_empty() {
            return; // only deals may win, and none is open to us
        }
        let open_floor = terms.floor_usd.unwrap_or(f64::INFINITY);
        let mut consider = |creative: u32, battr: &[u16]| {
            let ci = self.campaign_of[creative as usize] as usize;
            let campaign = &self.catalog.campaigns[ci];
            // Cheapest test first: without deals, the open floor decides.
            if terms.deals.is_empty() && campaign.max_cpm < open_floor {
                return;
            }
            let t = self.traits[creative as usize];
            if (self.any_exhausted.load(Ordering::Relaxed) && self.exhausted[ci].load(Ordering::Relaxed))
                || (secure_only && !t.secure)
                || (t.has_attr && self.catalog.creatives[creative as usize].attr.iter().any(|a| battr.contains(a)))
                || !campaign.targeting.matches(country, device_type, os)
                || blocked(req, campaign)
            {
                return;
            }
            // The first open deal this campaign buys through, else the open auction.
            let deal = terms.deals.iter().find(|(d, _)| {
                let deal = &deals[usize::from(*d)];
                let id = deal.id.as_deref().unwrap_or_default();
                campaign.deals.iter().any(|c| c == id)
                    && (deal.wadomain.is_empty()
                        || deal.wadomain.iter().any(|d| d.eq_ignore_ascii_case(&campaign.adomain)))
            });
            let (deal, floor) = match deal {
                Some(&(d, floor)) => (Some(d), floor),
                None if terms.private => return,
                None => (None, open_floor),
            };
            if campaign.max_cpm >= floor {
                out.push(Candidate { imp: imp_index, creative, deal });
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
                    let banner_type = self.traits[c as usize].banner_type;
                    if banner_type == 0 || !banner.btype.contains(&banner_type) {
                        consider(c, &banner.battr);
                    }
                }
            }
        }
        if let Some(video) = &imp.video {
            let (lo, hi) = (video.minduration.unwrap_or(0), video.maxduration.unwrap_or(u32::MAX));
            // Which of the catalog's few MIME types the player takes (index 0: unknown, allowed).
            let mut mime_ok = [true; 8];
            let known = self.video_mimes.len().min(mime_ok.len());
            if !video.mimes.is_empty() {
                for (k, m) in self.video_mimes.iter().enumerate().take(known).skip(1) {
                    mime_ok[k] = video.mimes.iter().any(|v| v.eq_ignore_ascii_case(m));
                }
            }
            for v in &self.video {
                let mime = usize::from(v.mime);
                let mime_ok = match mime_ok.get(mime) {
                    Some(&ok) => ok,
                    None => video.mimes.iter().any(|m| m.eq_ignore_ascii_case(&self.video_mimes[mime])),
                };
                let protocol_ok =
                    video.protocols.is_empty() || v.protocol == 0 || video.protocols.contains(&v.protocol);
                if (lo..=hi).contains(&v.duration) && mime_ok && protocol_ok {
                    consider(v.creative, &video.battr);
                }
            }
        }
        if let Some((n, request)) = imp.native.as_ref().and_then(|n| n.request.as_ref().map(|r| (n, r))) {
            for (c, shape) in &self.native {
                if native::fills(request, shape) {
                    consider(*c, &n.battr);
                }
            }
        }
    }
}

/// True when the request blocks the campaign's category, domain or app.
pub fn blocked(req: &BidRequest<'_>, campaign: &Campaign) -> bool {
    let category_blocked = req.bcat.iter().any(|b| {
        let cat = campaign.category.as_str();
        cat == b.as_ref() || (cat.len() > b.len() && cat.starts_with(b.as_ref()) && cat.as_bytes()[b.len()] == b'-')
    });
    let app_blocked = campaign.bundle.as_deref().is_some_and(|b| req.bapp.iter().any(|a| a == b));
    category_blocked || app_blocked || req.badv.iter().any(|d| d.eq_ignore_ascii_case(&campaign.adomain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{fixtures, Targeting};
    use crate::features::FeatureSpec;
    use std::path::Path;

    fn selector() -> Selector {
        let camp = |id: &str, cat: &str, countries: &[&str], max_cpm: f64| Campaign {
            max_cpm,
            targeting: Targeting {
                countries: countries.iter().map(|c| c.to_string()).collect(),
                ..Targeting::default()
            },
            deals: if id == "a" { vec!["d-a".into()] } else { Vec::new() },
            bundle: (id == "c").then(|| "com.c.app".into()),
            ..fixtures::campaign(id, cat)
        };
        let cr = |id: &str, cmp: &str, format: Format| Creative {
            attr: if id == "c300" { vec![6] } else { Vec::new() },
            banner_type: (id == "b300").then_some(3),
            mime: matches!(format, Format::Video { .. }).then(|| "video/mp4".into()),
            protocol: matches!(format, Format::Video { .. }).then_some(if id == "av15" { 7 } else { 3 }),
            native: matches!(format, Format::Native).then(|| crate::catalog::NativeAssets {
                title: "t".into(),
                image: crate::catalog::NativeImage { url: "https://x/i.jpg".into(), w: 1200, h: 627 },
                icon: None,
                sponsored: "b".into(),
                description: None,
                cta: None,
                click_url: "https://x/c".into(),
            }),
            ..fixtures::creative(id, cmp, format)
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
        let rates = Rates::new(&Default::default()).unwrap();
        for (i, imp) in req.imp.iter().enumerate() {
            s.select_imp(&req, i as u16, imp, &ImpTerms::of(imp, "ctrbid", &rates), &mut out);
        }
        let got: Vec<String> = out
            .iter()
            .map(|c| match c.deal {
                Some(d) => format!("{}@{d}", s.creative(c.creative).id),
                None => s.creative(c.creative).id.clone(),
            })
            .collect();
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
        let native = r#"{"native":{"request":"{\"assets\":[{\"id\":1,\"required\":1,\"title\":{\"len\":20}}]}"}}"#;
        check(&format!(r#"{{"imp":[{{"video":{{}}}},{native}]}}"#), &["av15", "av30"]);
        check(&format!(r#"{{"imp":[{native}],{usa}}}"#), &["bn"]);
        // A native imp without a readable request, or asking for what the creative lacks.
        check(&format!(r#"{{"imp":[{{"native":{{}}}}],{usa}}}"#), &[]);
        check(
            &format!(
                r#"{{"imp":[{{"native":{{"request":"{{\"assets\":[{{\"id\":1,\"required\":1,\"data\":{{\"type\":12}}}}]}}"}}}}],{usa}}}"#
            ),
            &[],
        );
    }

    #[test]
    fn creative_rules_of_real_requests() {
        let usa = r#""device":{"geo":{"country":"USA"}}"#;
        // btype 3 blocks b300's JavaScript banner; battr 6 blocks c300.
        check(&format!(r#"{{"imp":[{{"banner":{{"w":300,"h":250,"btype":[3],"battr":[6]}}}}],{usa}}}"#), &["a300"]);
        // Video MIME types and protocols: av15 is VAST 4 (7), av30 VAST 3 (3).
        check(r#"{"imp":[{"video":{"mimes":["video/mp4"],"protocols":[2,3]}}]}"#, &["av30"]);
        check(r#"{"imp":[{"video":{"mimes":["video/webm"]}}]}"#, &[]);
        // bapp blocks campaign c's app.
        check(r#"{"imp":[{"banner":{"w":300,"h":250}}],"bapp":["com.c.app"]}"#, &["a300"]);
        // secure: creatives with an http: URL in the markup are left out.
        let s = selector();
        assert!(s.traits.iter().all(|t| t.secure));
    }

    #[test]
    fn deals_and_private_auctions() {
        // Campaign a buys deal d-a: its creatives bid through it, the others in the open auction.
        let pmp = |private: u8, floor: f64, wseat: &str| {
            format!(
                r#"{{"imp":[{{"banner":{{"w":300,"h":250}},"bidfloor":0.1,"pmp":{{"private_auction":{private},"deals":[{{"id":"other"}},{{"id":"d-a","bidfloor":{floor},"wseat":[{wseat}]}}]}}}}]}}"#
            )
        };
        check(&pmp(0, 5.0, ""), &["a300@1", "c300"]);
        check(&pmp(1, 5.0, ""), &["a300@1"]);
        // Deal floor over the imp's: 20 is beyond a's max_cpm (10).
        check(&pmp(1, 20.0, ""), &[]);
        // A deal for other seats is not ours.
        check(&pmp(1, 5.0, r#""someone-else""#), &[]);
        check(&pmp(1, 5.0, r#""ctrbid""#), &["a300@1"]);
        // private_auction sent as a string.
        check(r#"{"imp":[{"banner":{"w":300,"h":250},"pmp":{"private_auction":"1","deals":[{"id":"zz"}]}}]}"#, &[]);
    }
}
