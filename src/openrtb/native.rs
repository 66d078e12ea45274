//! OpenRTB Native Ads 1.2: the assets a native imp asks for, whether a creative can
//! fill them, and the native response that goes into `bid.adm`.
//!
//! `imp.native.request` is a JSON document inside a JSON string (some exchanges send
//! it as an object; both are read, and 1.0/1.1's `{"native": {...}}` wrapper too). It
//! is parsed once, while the request is parsed, into owned values: a handful of asset
//! ids and sizes. A request that cannot be read has no assets, and no creative fills it.
//!
//! Asset rules ctrbid applies: a title fits when it is at most `len` characters; an image
//! fits when it has the exact `w`x`h` asked for (or the same aspect ratio, larger), or
//! reaches `wmin`x`hmin`; a data asset fits when the creative has that data type (1
//! sponsored-by, 2 description, 12 call to action) within `len` characters. A creative
//! fills a request when it fills every required asset; optional assets it can fill go
//! into the response, the rest are left out.

use super::lenient::{self, not_taken};
use super::list::List;
use crate::catalog::{NativeAssets, NativeImage};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Image asset types (Native 1.2 table 7.4).
pub const IMAGE_ICON: u8 = 1;
pub const IMAGE_MAIN: u8 = 3;
/// Data asset types (Native 1.2 table 7.3).
pub const DATA_SPONSORED: u8 = 1;
pub const DATA_DESCRIPTION: u8 = 2;
pub const DATA_CTA: u8 = 12;

/// A native request, as far as filling it goes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NativeRequest {
    /// True when the request came wrapped in `{"native": ...}` (1.0/1.1); the response
    /// is wrapped the same way.
    pub wrapped: bool,
    pub assets: Vec<Asset>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    pub id: u32,
    pub required: bool,
    pub kind: AssetKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AssetKind {
    Title {
        len: Option<u32>,
    },
    Image {
        image_type: Option<u8>,
        w: Option<u32>,
        h: Option<u32>,
        wmin: Option<u32>,
        hmin: Option<u32>,
    },
    Data {
        data_type: Option<u8>,
        len: Option<u32>,
    },
    /// Video or an asset kind ctrbid has nothing for.
    Other,
}

/// Reads `imp.native.request`, a string or an object; anything else reads as absent.
pub fn request_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NativeRequest>, D::Error> {
    struct FieldVisitor;
    impl<'de> Visitor<'de> for FieldVisitor {
        type Value = Option<NativeRequest>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a native request string or object")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            // A nested document that does not parse costs the native request, not the bid request.
            Ok(serde_json::from_str::<Document>(v).ok().map(Document::into_request))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Document::deserialize(de::value::MapAccessDeserializer::new(map)).map(|d| Some(d.into_request()))
        }
        not_taken!('de, None; seq i64 u64 f64 bool unit);
    }
    d.deserialize_any(FieldVisitor)
}

/// The native request document: assets at the top (1.2) or under `native` (1.0/1.1).
#[derive(Deserialize)]
struct Document {
    #[serde(default, deserialize_with = "lenient::opt_obj")]
    native: Option<Body>,
    #[serde(default, deserialize_with = "lenient::obj_list")]
    assets: List<RawAsset, 8>,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default, deserialize_with = "lenient::obj_list")]
    assets: List<RawAsset, 8>,
}

#[derive(Deserialize, Clone, Copy)]
struct RawAsset {
    #[serde(default, deserialize_with = "lenient::opt_int")]
    id: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    required: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_obj")]
    title: Option<RawTitle>,
    #[serde(default, deserialize_with = "lenient::opt_obj")]
    img: Option<RawImage>,
    #[serde(default, deserialize_with = "lenient::opt_obj")]
    data: Option<RawData>,
}

#[derive(Deserialize, Clone, Copy)]
struct RawTitle {
    #[serde(default, deserialize_with = "lenient::opt_int")]
    len: Option<u32>,
}

#[derive(Deserialize, Clone, Copy)]
struct RawImage {
    #[serde(default, rename = "type", deserialize_with = "lenient::opt_int")]
    image_type: Option<u8>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    w: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    h: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    wmin: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    hmin: Option<u32>,
}

#[derive(Deserialize, Clone, Copy)]
struct RawData {
    #[serde(default, rename = "type", deserialize_with = "lenient::opt_int")]
    data_type: Option<u8>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    len: Option<u32>,
}

impl Document {
    fn into_request(self) -> NativeRequest {
        let (wrapped, raw) = match self.native {
            Some(body) => (true, body.assets),
            None => (false, self.assets),
        };
        let assets = raw
            .iter()
            .filter_map(|&a| {
                let kind = match (a.title, a.img, a.data) {
                    (Some(t), _, _) => AssetKind::Title { len: t.len },
                    (None, Some(i), _) => {
                        AssetKind::Image { image_type: i.image_type, w: i.w, h: i.h, wmin: i.wmin, hmin: i.hmin }
                    }
                    (None, None, Some(d)) => AssetKind::Data { data_type: d.data_type, len: d.len },
                    (None, None, None) => AssetKind::Other,
                };
                // An asset without an id cannot be answered.
                Some(Asset { id: a.id?, required: a.required.unwrap_or(false), kind })
            })
            .collect();
        NativeRequest { wrapped, assets }
    }
}

/// What goes into one asset of the response, borrowed from the creative.
enum Fill<'c> {
    Title(&'c str),
    Image(&'c NativeImage),
    Data(&'c str),
}

fn image_fits(iw: u32, ih: u32, w: Option<u32>, h: Option<u32>, wmin: Option<u32>, hmin: Option<u32>) -> bool {
    let exact = match (w, h) {
        (Some(w), Some(h)) if w > 0 && h > 0 => {
            let same = iw == w && ih == h;
            // Same aspect ratio within 1 %, at least as large: exchanges scale down.
            let ratio = (f64::from(iw) * f64::from(h)) / (f64::from(ih.max(1)) * f64::from(w));
            same || ((0.99..=1.01).contains(&ratio) && iw >= w)
        }
        _ => true,
    };
    exact && iw >= wmin.unwrap_or(0) && ih >= hmin.unwrap_or(0)
}

/// The creative's content for an asset that [`NativeShape::fits`] accepted.
fn content<'c>(asset: &Asset, c: &'c NativeAssets) -> Option<Fill<'c>> {
    match asset.kind {
        AssetKind::Title { .. } => Some(Fill::Title(&c.title)),
        AssetKind::Image { image_type: Some(IMAGE_ICON), .. } => c.icon.as_ref().map(Fill::Image),
        AssetKind::Image { .. } => Some(Fill::Image(&c.image)),
        AssetKind::Data { data_type, .. } => match data_type? {
            DATA_SPONSORED => Some(Fill::Data(&c.sponsored)),
            DATA_DESCRIPTION => c.description.as_deref().map(Fill::Data),
            DATA_CTA => c.cta.as_deref().map(Fill::Data),
            _ => None,
        },
        AssetKind::Other => None,
    }
}

/// A native creative's assets reduced to what fitting them needs: text lengths in
/// characters and image sizes, computed once per catalog load so selection compares
/// integers instead of walking strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeShape {
    title: u32,
    image: (u32, u32),
    icon: Option<(u32, u32)>,
    sponsored: u32,
    description: Option<u32>,
    cta: Option<u32>,
}

impl NativeShape {
    pub fn of(c: &NativeAssets) -> NativeShape {
        let chars = |s: &str| u32::try_from(s.chars().count()).unwrap_or(u32::MAX);
        NativeShape {
            title: chars(&c.title),
            image: (c.image.w, c.image.h),
            icon: c.icon.as_ref().map(|i| (i.w, i.h)),
            sponsored: chars(&c.sponsored),
            description: c.description.as_deref().map(chars),
            cta: c.cta.as_deref().map(chars),
        }
    }

    /// Whether a creative of this shape can fill `asset`: the one place the asset
    /// rules of the module docs are decided, for selection and for the response alike.
    fn fits(&self, asset: &Asset) -> bool {
        let len_ok = |chars: u32, len: Option<u32>| len.is_none_or(|len| len == 0 || chars <= len);
        match asset.kind {
            AssetKind::Title { len } => len_ok(self.title, len),
            AssetKind::Image { image_type, w, h, wmin, hmin } => {
                let size = match image_type {
                    Some(IMAGE_ICON) => self.icon,
                    _ => Some(self.image),
                };
                size.is_some_and(|(iw, ih)| image_fits(iw, ih, w, h, wmin, hmin))
            }
            AssetKind::Data { data_type, len } => {
                let chars = match data_type {
                    Some(DATA_SPONSORED) => Some(self.sponsored),
                    Some(DATA_DESCRIPTION) => self.description,
                    Some(DATA_CTA) => self.cta,
                    _ => None,
                };
                chars.is_some_and(|c| len_ok(c, len))
            }
            AssetKind::Other => false,
        }
    }
}

/// True when a creative of this shape fills every required asset of `request` (and
/// the request asks for at least one asset).
pub fn fills(request: &NativeRequest, shape: &NativeShape) -> bool {
    !request.assets.is_empty() && request.assets.iter().all(|a| !a.required || shape.fits(a))
}

#[derive(Serialize)]
struct ResponseAsset<'c> {
    id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<TextOut<'c>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    img: Option<&'c NativeImage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<ValueOut<'c>>,
}

#[derive(Serialize)]
struct TextOut<'c> {
    text: &'c str,
}

#[derive(Serialize)]
struct ValueOut<'c> {
    value: &'c str,
}

#[derive(Serialize)]
struct Link<'c> {
    url: &'c str,
}

#[derive(Serialize)]
struct ResponseBody<'c> {
    ver: &'static str,
    assets: Vec<ResponseAsset<'c>>,
    link: Link<'c>,
}

#[derive(Serialize)]
struct Wrapped<'c> {
    native: ResponseBody<'c>,
}

/// The native response for `bid.adm`: one asset per request asset the creative fills,
/// under the request's asset ids. `None` when a required asset cannot be filled (or the
/// request asks for none): the same decision as [`fills`].
pub fn response_adm(request: &NativeRequest, creative: &NativeAssets) -> Option<String> {
    if request.assets.is_empty() {
        return None;
    }
    let shape = NativeShape::of(creative);
    let mut assets = Vec::with_capacity(request.assets.len());
    for a in &request.assets {
        let Some(f) = content(a, creative).filter(|_| shape.fits(a)) else {
            if a.required {
                return None;
            }
            continue;
        };
        let mut out = ResponseAsset { id: a.id, title: None, img: None, data: None };
        match f {
            Fill::Title(text) => out.title = Some(TextOut { text }),
            Fill::Image(img) => out.img = Some(img),
            Fill::Data(value) => out.data = Some(ValueOut { value }),
        }
        assets.push(out);
    }
    let body = ResponseBody { ver: "1.2", assets, link: Link { url: &creative.click_url } };
    let json =
        if request.wrapped { serde_json::to_string(&Wrapped { native: body }) } else { serde_json::to_string(&body) };
    json.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creative() -> NativeAssets {
        NativeAssets {
            title: "New from brand".into(),
            image: NativeImage { url: "https://cdn.example/a.jpg".into(), w: 1200, h: 627 },
            icon: None,
            sponsored: "brand.example".into(),
            description: Some("Limited-time offer.".into()),
            cta: None,
            click_url: "https://brand.example/landing".into(),
        }
    }

    fn parse(native_json: &str) -> NativeRequest {
        let body = format!(r#"{{"request":{}}}"#, serde_json::to_string(native_json).unwrap());
        #[derive(Deserialize)]
        struct N {
            #[serde(deserialize_with = "request_field")]
            request: Option<NativeRequest>,
        }
        serde_json::from_str::<N>(&body).unwrap().request.unwrap()
    }

    #[test]
    fn reads_string_and_wrapped_requests() {
        let r = parse(
            r#"{"ver":"1.2","assets":[{"id":1,"required":1,"title":{"len":90}},{"id":"2","img":{"type":3,"wmin":600,"hmin":314}}]}"#,
        );
        assert!(!r.wrapped);
        assert_eq!(r.assets.len(), 2);
        assert_eq!(r.assets[0], Asset { id: 1, required: true, kind: AssetKind::Title { len: Some(90) } });
        assert!(matches!(r.assets[1].kind, AssetKind::Image { image_type: Some(3), wmin: Some(600), .. }));
        let w = parse(r#"{"native":{"assets":[{"id":7,"required":true,"data":{"type":1}}]}}"#);
        assert!(w.wrapped);
        assert_eq!(w.assets[0].kind, AssetKind::Data { data_type: Some(1), len: None });
        // Not JSON inside the string: no assets, no fill.
        let mut buf = br#"{"request":"{not json"}"#.to_vec();
        #[derive(Deserialize)]
        struct N {
            #[serde(deserialize_with = "request_field")]
            request: Option<NativeRequest>,
        }
        assert_eq!(simd_json::serde::from_slice::<N>(&mut buf).unwrap().request, None);
    }

    #[test]
    fn required_assets_decide_the_fill() {
        let c = creative();
        let ok = parse(
            r#"{"assets":[{"id":1,"required":1,"title":{"len":20}},{"id":2,"required":1,"img":{"type":3,"w":1200,"h":627}},{"id":4,"required":1,"data":{"type":1,"len":25}},{"id":5,"img":{"type":1,"w":80,"h":80}}]}"#,
        );
        let shape = NativeShape::of(&c);
        assert!(fills(&ok, &shape));
        let adm = response_adm(&ok, &c).unwrap();
        let v: serde_json::Value = serde_json::from_str(&adm).unwrap();
        assert_eq!(v["assets"].as_array().unwrap().len(), 3, "the optional icon is left out: {adm}");
        assert_eq!(v["assets"][0]["id"], 1);
        assert_eq!(v["assets"][0]["title"]["text"], "New from brand");
        assert_eq!(v["assets"][1]["img"]["w"], 1200);
        assert_eq!(v["assets"][2]["data"]["value"], "brand.example");
        assert_eq!(v["link"]["url"], "https://brand.example/landing");

        for bad in [
            r#"{"assets":[{"id":1,"required":1,"title":{"len":5}}]}"#,
            r#"{"assets":[{"id":1,"required":1,"img":{"type":3,"wmin":2000}}]}"#,
            r#"{"assets":[{"id":1,"required":1,"img":{"type":3,"w":300,"h":250}}]}"#,
            r#"{"assets":[{"id":1,"required":1,"img":{"type":1,"w":80,"h":80}}]}"#,
            r#"{"assets":[{"id":1,"required":1,"data":{"type":12}}]}"#,
            r#"{"assets":[{"id":1,"required":1,"video":{}}]}"#,
            r#"{"assets":[]}"#,
        ] {
            assert!(!fills(&parse(bad), &shape), "{bad}");
            assert!(response_adm(&parse(bad), &c).is_none(), "{bad}: shape and assets agree");
        }
        // Same aspect ratio, larger: fits (exchanges scale down).
        assert!(fills(&parse(r#"{"assets":[{"id":1,"required":1,"img":{"type":3,"w":600,"h":314}}]}"#), &shape));
    }
}
