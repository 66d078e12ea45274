//! The campaign catalog: what ctrbid can bid with.
//!
//! A catalog is one JSON document (`catalog.json`, written by `ctrbid simulate` or by
//! an operator) holding campaigns and their creatives. The server loads it once and
//! keeps it behind an `ArcSwap`; it is read-only on the request path.
//!
//! Each campaign pays for one thing ([`Goal`]): clicks (`goal_cpc`, USD per click) or
//! conversions (`goal_cpa`, USD per conversion). A file gives exactly one of the two per
//! campaign; [`Catalog::check`] refuses a campaign with neither or both, naming it.
//!
//! Targeting semantics, shared by the simulator and by candidate selection:
//! an empty list means "any"; country codes are ISO-3166 alpha-3 upper case as in
//! OpenRTB `device.geo.country`; OS names compare case-insensitively; device types are
//! OpenRTB 2.6 `device.devicetype` codes (1 mobile/tablet, 2 PC, 3 CTV, 4 phone,
//! 5 tablet, 6 connected device, 7 set-top box).

mod reach;
mod select;

pub use select::{Admit, AdmitAll, Candidate, Candidates, ImpTerms, Limits, Selected, Selector};

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The whole catalog as stored on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Bumped whenever the layout changes in a way older readers cannot parse.
    pub version: u32,
    pub campaigns: Vec<Campaign>,
    pub creatives: Vec<Creative>,
}

/// One campaign: who pays, what for, and whom it may reach.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    pub id: String,
    pub advertiser: String,
    /// Advertiser domain, reported in `bid.adomain` and checked against `badv`.
    pub adomain: String,
    /// IAB content category of the advertiser (e.g. `IAB2`, `IAB2-3`), checked against `bcat`.
    pub category: String,
    /// What the advertiser pays per click, in USD, for a CPC campaign. Absent from the
    /// file (read as 0) for a CPA campaign. Invariant after [`Catalog::check`]: exactly
    /// one of `goal_cpc` and `goal_cpa` is positive and finite, the other is 0; read
    /// them through [`Campaign::goal`].
    #[serde(default, skip_serializing_if = "is_unset")]
    pub goal_cpc: f64,
    /// What the advertiser pays per conversion, in USD, for a CPA campaign; absent
    /// (read as 0) for a CPC campaign.
    #[serde(default, skip_serializing_if = "is_unset")]
    pub goal_cpa: f64,
    /// Highest CPM this campaign may bid, in USD.
    pub max_cpm: f64,
    /// Spend allowed per day, in USD.
    pub daily_budget: f64,
    #[serde(default)]
    pub targeting: Targeting,
    /// Private-marketplace deal ids this campaign buys through (`imp.pmp.deals[].id`).
    /// A campaign with deals still bids in the open auction unless an imp is private.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deals: Vec<String>,
    /// The advertiser's app (bundle or store id), checked against `bapp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// Where a click on the campaign's ads takes the user (`/click` redirects there with
    /// a `ctrbid_click` id). Default: `https://<adomain>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_url: Option<String>,
    /// At most this many impressions of the campaign's creatives per user in a window,
    /// e.g. `{"impressions": 3, "window_s": 86400}` ([`crate::freqcap`]). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_cap: Option<crate::freqcap::FrequencyCap>,
}

/// What a campaign pays for, in USD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// Per click: valued at `goal x pCTR`.
    Cpc(f64),
    /// Per conversion: valued at `goal x pCTR x pCVR`, so it needs a model with a
    /// conversion head.
    Cpa(f64),
}

impl Goal {
    /// True when valuing it needs the model's pCVR.
    pub fn needs_pcvr(self) -> bool {
        matches!(self, Goal::Cpa(_))
    }
}

impl Campaign {
    /// The campaign's goal. Relies on the invariant [`Catalog::check`] proves (exactly one
    /// of `goal_cpc`, `goal_cpa` set); an unchecked campaign with `goal_cpa` set is CPA.
    pub fn goal(&self) -> Goal {
        if self.goal_cpa > 0.0 {
            Goal::Cpa(self.goal_cpa)
        } else {
            Goal::Cpc(self.goal_cpc)
        }
    }

    /// Where a click goes: `landing_url`, else the advertiser's domain.
    pub fn landing(&self) -> String {
        match &self.landing_url {
            Some(url) => url.clone(),
            None => format!("https://{}/", self.adomain),
        }
    }
}

/// A goal field absent from the file reads as 0 and is written back absent.
fn is_unset(v: &f64) -> bool {
    *v == 0.0
}

/// Who a campaign may reach. Empty lists match everything.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Targeting {
    pub countries: Vec<String>,
    pub device_types: Vec<u8>,
    pub os: Vec<String>,
}

impl Targeting {
    /// True when a request with these attributes may be shown this campaign.
    /// Absent request attributes match only untargeted dimensions.
    pub fn matches(&self, country: Option<&str>, device_type: Option<u8>, os: Option<&str>) -> bool {
        let country_ok = self.countries.is_empty()
            || country.is_some_and(|c| self.countries.iter().any(|t| t.eq_ignore_ascii_case(c)));
        let device_ok = self.device_types.is_empty() || device_type.is_some_and(|d| self.device_types.contains(&d));
        let os_ok = self.os.is_empty() || os.is_some_and(|o| self.os.iter().any(|t| t.eq_ignore_ascii_case(o)));
        country_ok && device_ok && os_ok
    }
}

/// One ad a campaign can show.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Creative {
    pub id: String,
    pub campaign_id: String,
    pub format: Format,
    /// The ad markup returned in `bid.adm` (for native creatives with `native` assets,
    /// the response is built from those instead, for the request's asset ids).
    pub adm: String,
    /// Creative attributes (AdCOM list: 1 audio auto-play, 6 in-banner video, 8 rollover,
    /// ...), checked against `battr`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attr: Vec<u16>,
    /// Banner markup type (1 XHTML text, 2 XHTML banner, 3 JavaScript, 4 iframe),
    /// checked against `banner.btype`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner_type: Option<u8>,
    /// Video: the media file's MIME type, checked against `video.mimes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    /// Video: the VAST protocol code of the markup (2 VAST 2.0, 3 VAST 3.0, 7 VAST 4.0...),
    /// checked against `video.protocols`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u16>,
    /// Native: the assets a native response is built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<NativeAssets>,
    /// A cap of this creative's own, besides its campaign's. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_cap: Option<crate::freqcap::FrequencyCap>,
}

/// A native creative's assets (Native Ads 1.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeAssets {
    pub title: String,
    /// The main image (image asset type 3).
    pub image: NativeImage,
    /// Image asset type 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<NativeImage>,
    /// Data asset type 1: the brand shown as "sponsored by".
    pub sponsored: String,
    /// Data asset type 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Data asset type 12: call-to-action text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cta: Option<String>,
    /// Where a click goes (`link.url` of the response).
    pub click_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeImage {
    pub url: String,
    pub w: u32,
    pub h: u32,
}

impl Creative {
    /// True when the markup loads nothing over plain HTTP, so it may serve on a
    /// `secure = 1` imp.
    pub fn is_secure(&self) -> bool {
        let native_ok = self.native.as_ref().is_none_or(|n| {
            [n.image.url.as_str(), n.click_url.as_str()]
                .into_iter()
                .chain(n.icon.as_ref().map(|i| i.url.as_str()))
                .all(|u| !has_plain_http(u))
        });
        !has_plain_http(&self.adm) && native_ok
    }
}

/// True when `text` holds a plain-HTTP URL scheme, `http:` in any letter case (URL
/// schemes are case-insensitive, RFC 3986 3.1, and browsers load `HTTP://` as `http://`).
fn has_plain_http(text: &str) -> bool {
    text.as_bytes().windows(5).any(|w| w.eq_ignore_ascii_case(b"http:"))
}

/// What kind of slot a creative fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Format {
    Banner {
        w: u32,
        h: u32,
    },
    /// Video creative: player size it was cut for and its duration in seconds.
    Video {
        w: u32,
        h: u32,
        duration: u32,
    },
    Native,
}

impl Format {
    /// Width and height, where the format has them (native has none).
    pub fn size(&self) -> Option<(u32, u32)> {
        match *self {
            Format::Banner { w, h } | Format::Video { w, h, .. } => Some((w, h)),
            Format::Native => None,
        }
    }

    /// A short stable label (`banner`, `video`, `native`) used as a feature value.
    pub fn kind(&self) -> &'static str {
        match self {
            Format::Banner { .. } => "banner",
            Format::Video { .. } => "video",
            Format::Native => "native",
        }
    }
}

/// Errors met while loading a catalog; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("catalog {path} is not valid: {error}")]
    Parse { path: String, error: serde_json::Error },
    #[error("catalog {path}: {reason}")]
    Invalid { path: String, reason: String },
}

impl Catalog {
    /// Reads and checks a catalog file.
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let name = path.display().to_string();
        let text = std::fs::read(path).map_err(|error| CatalogError::Read { path: name.clone(), error })?;
        let catalog: Catalog =
            serde_json::from_slice(&text).map_err(|error| CatalogError::Parse { path: name.clone(), error })?;
        catalog.check().map_err(|reason| CatalogError::Invalid { path: name, reason })?;
        Ok(catalog)
    }

    /// Every creative names an existing campaign; ids are unique; prices are finite and
    /// positive; every campaign has exactly one goal (`goal_cpc` or `goal_cpa`).
    pub fn check(&self) -> Result<(), String> {
        let mut ids = std::collections::HashSet::new();
        for c in &self.campaigns {
            if !ids.insert(c.id.as_str()) {
                return Err(format!("campaign id {:?} appears twice", c.id));
            }
            if !(c.max_cpm.is_finite() && c.max_cpm > 0.0) {
                return Err(format!("campaign {:?} needs a positive finite max_cpm", c.id));
            }
            for (name, v) in [("goal_cpc", c.goal_cpc), ("goal_cpa", c.goal_cpa)] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!("campaign {:?} has {name} {v}: it must be a positive finite USD amount", c.id));
                }
            }
            match (c.goal_cpc > 0.0, c.goal_cpa > 0.0) {
                (true, false) | (false, true) => {}
                (false, false) => {
                    return Err(format!(
                        "campaign {:?} has no goal: give exactly one of goal_cpc (USD per click) or goal_cpa (USD per conversion), positive",
                        c.id
                    ))
                }
                (true, true) => {
                    return Err(format!(
                        "campaign {:?} has both goal_cpc and goal_cpa: give exactly one",
                        c.id
                    ))
                }
            }
            if let Some(url) = &c.landing_url {
                let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
                if !scheme_ok || url.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                    return Err(format!(
                        "campaign {:?} has landing_url {url:?}: it must be an http(s) URL without spaces",
                        c.id
                    ));
                }
            }
            if let Some(cap) = &c.frequency_cap {
                cap.check().map_err(|e| format!("campaign {:?} has a frequency_cap whose {e}", c.id))?;
            }
        }
        let mut crids = std::collections::HashSet::new();
        for cr in &self.creatives {
            if !crids.insert(cr.id.as_str()) {
                return Err(format!("creative id {:?} appears twice", cr.id));
            }
            if !ids.contains(cr.campaign_id.as_str()) {
                return Err(format!("creative {:?} names unknown campaign {:?}", cr.id, cr.campaign_id));
            }
            if let Some(cap) = &cr.frequency_cap {
                cap.check().map_err(|e| format!("creative {:?} has a frequency_cap whose {e}", cr.id))?;
            }
        }
        Ok(())
    }

    /// The campaign a creative belongs to. Panics never: `check` proved every link.
    pub fn campaign_index(&self) -> std::collections::HashMap<&str, usize> {
        self.campaigns.iter().enumerate().map(|(i, c)| (c.id.as_str(), i)).collect()
    }
}

/// Catalog entries for unit tests: the fields selection and pricing read, with plain
/// defaults for the rest (tests override what they exercise).
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// Campaign `id` in `category`: goal CPC 1, max CPM 10, budget 100 USD, untargeted.
    pub fn campaign(id: &str, category: &str) -> Campaign {
        Campaign {
            id: id.into(),
            advertiser: "adv".into(),
            adomain: format!("{id}.example"),
            category: category.into(),
            goal_cpc: 1.0,
            goal_cpa: 0.0,
            max_cpm: 10.0,
            daily_budget: 100.0,
            targeting: Targeting::default(),
            deals: Vec::new(),
            bundle: None,
            landing_url: None,
            frequency_cap: None,
        }
    }

    /// Creative `id` of `campaign_id` with empty markup and no optional attributes.
    pub fn creative(id: &str, campaign_id: &str, format: Format) -> Creative {
        Creative {
            id: id.into(),
            campaign_id: campaign_id.into(),
            format,
            adm: String::new(),
            attr: Vec::new(),
            banner_type: None,
            mime: None,
            protocol: None,
            native: None,
            frequency_cap: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a catalog with one campaign whose goal fields are `goals` (JSON members)
    /// and checks it: `Ok(goal)` or an error containing `expected`.
    fn check(goals: &str, expected: Result<Goal, &str>) {
        let text = format!(
            r#"{{"version": 1, "creatives": [], "campaigns": [{{"id": "cmp-7", "advertiser": "a",
                "adomain": "a.example", "category": "IAB2", {goals} "max_cpm": 10, "daily_budget": 100}}]}}"#
        );
        let got = serde_json::from_str::<Catalog>(&text)
            .map_err(|e| e.to_string())
            .and_then(|c| c.check().map(|()| c.campaigns[0].goal()));
        match (&got, expected) {
            (Ok(g), Ok(e)) => assert_eq!(*g, e, "{goals}"),
            (Err(msg), Err(e)) => assert!(msg.contains(e), "{goals}: {msg:?} does not contain {e:?}"),
            _ => panic!("{goals}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn goals() {
        check(r#""goal_cpc": 1.5,"#, Ok(Goal::Cpc(1.5)));
        check(r#""goal_cpa": 40,"#, Ok(Goal::Cpa(40.0)));
        check(r#""goal_cpc": 0, "goal_cpa": 40,"#, Ok(Goal::Cpa(40.0))); // 0 reads as absent
        check("", Err(r#"campaign "cmp-7" has no goal"#));
        check(r#""goal_cpc": 0,"#, Err(r#"campaign "cmp-7" has no goal"#));
        check(r#""goal_cpc": 1, "goal_cpa": 40,"#, Err(r#"campaign "cmp-7" has both goal_cpc and goal_cpa"#));
        check(r#""goal_cpa": -3,"#, Err(r#"campaign "cmp-7" has goal_cpa -3"#));
        check(r#""goal_cpc": 1, "goal_cpv": 2,"#, Err("unknown field `goal_cpv`"));
    }

    /// A CPC campaign writes back as it was read: no `goal_cpa` member appears.
    #[test]
    fn cpc_campaigns_round_trip_without_goal_cpa() {
        let c = fixtures::campaign("c", "IAB2");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["goal_cpc"], 1.0);
        assert!(v.get("goal_cpa").is_none());
        let cpa = Campaign { goal_cpc: 0.0, goal_cpa: 30.0, ..c };
        let v = serde_json::to_value(&cpa).unwrap();
        assert!(v.get("goal_cpc").is_none());
        assert_eq!(v["goal_cpa"], 30.0);
    }

    /// The shipped catalog (goal_cpc only until it is regenerated) loads as it is.
    #[test]
    fn shipped_catalog_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default/catalog.json");
        let catalog = Catalog::load(&path).unwrap();
        assert!(catalog.campaigns.iter().all(|c| match c.goal() {
            Goal::Cpc(g) | Goal::Cpa(g) => g > 0.0,
        }));
    }
}
