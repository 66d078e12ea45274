//! The OpenRTB 2.6 bid request, as far as a DSP reads it.
//!
//! Every struct borrows from the body. Fields ctrbid does not read are skipped by
//! serde (unknown fields are ignored, spec §2.6). Scalars go through [`super::lenient`]
//! so `"bidfloor":"0.5"` or `"devicetype":"4"` read as numbers and a wrong-typed scalar
//! reads as absent. Required fields are `Option` here: [`super::validate`] decides.

use super::lenient;
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Debug, Default, Deserialize)]
pub struct BidRequest<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub imp: Vec<Imp<'a>>,
    #[serde(default, borrow)]
    pub site: Option<Site<'a>>,
    #[serde(default, borrow)]
    pub app: Option<App<'a>>,
    #[serde(default, borrow)]
    pub device: Option<Device<'a>>,
    #[serde(default, borrow)]
    pub user: Option<User<'a>>,
    /// Maximum time in milliseconds the exchange waits for the answer.
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub tmax: Option<u32>,
    /// Auction type: 1 first price, 2 second price plus (the default).
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub at: Option<u8>,
    /// Currencies allowed for bids (ISO-4217); empty means the exchange's default (USD).
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub cur: Vec<Cow<'a, str>>,
    /// Blocked advertiser categories.
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub bcat: Vec<Cow<'a, str>>,
    /// Blocked advertiser domains.
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub badv: Vec<Cow<'a, str>>,
    /// 1 when the auction is a test and no one is billed.
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub test: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Imp<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub banner: Option<Banner>,
    #[serde(default)]
    pub video: Option<Video>,
    /// Only its presence is read for now.
    #[serde(default)]
    pub audio: Option<IgnoredAny>,
    /// Only its presence is read for now.
    #[serde(default)]
    pub native: Option<IgnoredAny>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub tagid: Option<Cow<'a, str>>,
    /// Minimum bid, CPM in `bidfloorcur`.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub bidfloor: Option<f64>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub bidfloorcur: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Banner {
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub w: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub h: Option<u32>,
    #[serde(default)]
    pub format: Vec<FormatSize>,
    /// Ad position on screen (0 unknown, 1 above the fold, 3 below, ...).
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub pos: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FormatSize {
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub w: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub h: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Video {
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub w: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub h: Option<u32>,
    /// Seconds.
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub minduration: Option<u32>,
    /// Seconds.
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub maxduration: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Publisher<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Site<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub domain: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub cat: Vec<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub publisher: Option<Publisher<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct App<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub bundle: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub cat: Vec<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub publisher: Option<Publisher<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Device<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub ua: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub ip: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub devicetype: Option<u8>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub os: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub geo: Option<Geo<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Geo<'a> {
    /// ISO-3166-1 alpha-3.
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub country: Option<Cow<'a, str>>,
    /// Local time as +/- minutes from UTC.
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub utcoffset: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
pub struct User<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub buyeruid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub data: Vec<Data<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Data<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub segment: Vec<Segment<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Segment<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
}

impl<'a> BidRequest<'a> {
    /// Publisher id of the site or app.
    pub fn publisher_id(&self) -> Option<&str> {
        let from_site = self.site.as_ref().and_then(|s| s.publisher.as_ref());
        let from_app = self.app.as_ref().and_then(|a| a.publisher.as_ref());
        from_site.or(from_app).and_then(|p| p.id.as_deref())
    }

    /// Site domain, or app bundle.
    pub fn inventory_domain(&self) -> Option<&str> {
        match (&self.site, &self.app) {
            (Some(site), _) => site.domain.as_deref(),
            (None, Some(app)) => app.bundle.as_deref(),
            (None, None) => None,
        }
    }

    /// Content categories of the site or app.
    pub fn inventory_cats(&self) -> &[Cow<'a, str>] {
        match (&self.site, &self.app) {
            (Some(site), _) => &site.cat,
            (None, Some(app)) => &app.cat,
            (None, None) => &[],
        }
    }

    pub fn country(&self) -> Option<&str> {
        self.device.as_ref()?.geo.as_ref()?.country.as_deref()
    }

    pub fn device_type(&self) -> Option<u8> {
        self.device.as_ref()?.devicetype
    }

    pub fn os(&self) -> Option<&str> {
        self.device.as_ref()?.os.as_deref()
    }

    /// Minutes east of UTC of the user's clock; 0 when unknown.
    pub fn utc_offset_minutes(&self) -> i32 {
        self.device.as_ref().and_then(|d| d.geo.as_ref()).and_then(|g| g.utcoffset).unwrap_or(0)
    }

    /// The user's segment ids in order of appearance across `user.data`.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.user.iter().flat_map(|u| u.data.iter()).flat_map(|d| d.segment.iter()).filter_map(|s| s.id.as_deref())
    }
}

impl Banner {
    /// Every size the slot accepts: `w`/`h` first, then `format[]`.
    pub fn sizes(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let main = self.w.zip(self.h);
        main.into_iter().chain(self.format.iter().filter_map(|f| f.w.zip(f.h)))
    }
}
