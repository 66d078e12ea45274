//! A bid request as structured fuzz input: the shape of an OpenRTB request with every
//! scalar free to be the wrong type, a huge or negative number, or a weird string.
//!
//! [`Request::to_json`] writes it as serde_json would send it and says whether it
//! contains a wrong type where a struct or list belongs ([`Shape::Wrong`]). Wrong scalars
//! never fail a parse (`openrtb::lenient` promises that); wrong structures may.

use arbitrary::Arbitrary;
use serde_json::{json, Map, Value};

/// Strings exchanges and the shipped catalog really use, so selection and the match
/// features see hits, not only random text.
#[rustfmt::skip]
const VOCAB: &[&str] = &[
    "", "1", "2", "USD", "usd", "EUR", "GBP", "JPY", "USA", "usa", "GBR", "DEU", "iOS", "ios", "Android",
    "IAB1", "IAB2", "IAB2-3", "IAB20-18", "IAB", "IAB-", "seg-IAB7", "seg-IAB2-4", "sports", "cmp-1",
    "brand1.example", "news.example", "com.example.app", "pub-1", "u1", "\u{0}", "é\"\\/\n", "\u{10FFFF}",
];

/// Sizes the catalog has creatives for, and a few it does not.
const SIZES: &[(u32, u32)] = &[(300, 250), (320, 50), (728, 90), (320, 480), (336, 280), (300, 600), (1, 1), (0, 0)];

/// The top-level fields `openrtb::BidRequest` reads.
const KNOWN_FIELDS: &[&str] =
    &["id", "imp", "site", "app", "device", "user", "tmax", "at", "cur", "bcat", "badv", "test"];

/// Any JSON scalar, or a small array or object where a scalar belongs.
#[derive(Arbitrary, Debug)]
pub enum Scalar {
    Vocab(u8),
    Str(String),
    Small(u16),
    Int(i64),
    Uint(u64),
    Float(f64),
    IntStr(i64),
    FloatStr(f64),
    Bool(bool),
    Null,
    Array(Vec<i8>),
    Object(String),
}

impl Scalar {
    fn to_json(&self) -> Value {
        match self {
            Scalar::Vocab(i) => json!(VOCAB[usize::from(*i) % VOCAB.len()]),
            Scalar::Str(s) => json!(s),
            Scalar::Small(n) => json!(n),
            Scalar::Int(n) => json!(n),
            Scalar::Uint(n) => json!(n),
            // Non-finite floats have no JSON form; serde_json writes null.
            Scalar::Float(f) => json!(f),
            Scalar::IntStr(n) => json!(format!(" {n}")),
            Scalar::FloatStr(f) => json!(f.to_string()),
            Scalar::Bool(b) => json!(b),
            Scalar::Null => Value::Null,
            Scalar::Array(v) => json!(v),
            Scalar::Object(k) => json!({ k: 1 }),
        }
    }
}

/// Where a struct or list belongs: absent, present, or a scalar in its place.
#[derive(Arbitrary, Debug)]
pub enum Shape<T> {
    Absent,
    Present(T),
    Wrong(Scalar),
}

/// A list of strings (`cur`, `bcat`, `badv`, `cat`): OpenRTB says array, exchanges
/// sometimes send one string.
#[derive(Arbitrary, Debug)]
pub enum List {
    Absent,
    Items(Vec<Scalar>),
    One(Scalar),
}

#[derive(Arbitrary, Debug)]
pub enum Size {
    Known(u8),
    Raw { w: Option<Scalar>, h: Option<Scalar> },
}

#[derive(Arbitrary, Debug)]
pub struct Request {
    /// Auction time: seconds after 2020-01-01, so `now_unix` stays a real clock value.
    pub now_offset: u32,
    id: Option<Scalar>,
    imp: Shape<Vec<Shape<Imp>>>,
    site: Shape<Site>,
    app: Shape<Site>,
    device: Shape<Device>,
    user: Shape<User>,
    tmax: Option<Scalar>,
    at: Option<Scalar>,
    cur: List,
    bcat: List,
    badv: List,
    test: Option<Scalar>,
    /// A field ctrbid does not know.
    unknown: Option<(String, Scalar)>,
}

#[derive(Arbitrary, Debug)]
struct Imp {
    id: Option<Scalar>,
    banner: Shape<Banner>,
    video: Shape<Video>,
    /// Read for presence only: any JSON value counts.
    audio: Option<Scalar>,
    native: Option<Scalar>,
    tagid: Option<Scalar>,
    bidfloor: Option<Scalar>,
    bidfloorcur: Option<Scalar>,
}

#[derive(Arbitrary, Debug)]
struct Banner {
    size: Option<Size>,
    format: Shape<Vec<Shape<Size>>>,
    pos: Option<Scalar>,
}

#[derive(Arbitrary, Debug)]
struct Video {
    size: Option<Size>,
    minduration: Option<Scalar>,
    maxduration: Option<Scalar>,
}

/// Site or app: `domain` is written as `bundle` for an app.
#[derive(Arbitrary, Debug)]
struct Site {
    id: Option<Scalar>,
    domain: Option<Scalar>,
    cat: List,
    publisher: Shape<Option<Scalar>>,
}

#[derive(Arbitrary, Debug)]
struct Device {
    ua: Option<Scalar>,
    ip: Option<Scalar>,
    devicetype: Option<Scalar>,
    os: Option<Scalar>,
    geo: Shape<(Option<Scalar>, Option<Scalar>)>,
}

#[derive(Arbitrary, Debug)]
struct User {
    id: Option<Scalar>,
    buyeruid: Option<Scalar>,
    data: Shape<Vec<Shape<Data>>>,
}

/// One `user.data` entry; each segment is an object with an optional `id`.
#[derive(Arbitrary, Debug)]
struct Data {
    id: Option<Scalar>,
    segment: Shape<Vec<Shape<Option<Scalar>>>>,
}

/// Builds one JSON object, noting whether any structure was replaced by a scalar.
#[derive(Default)]
struct Writer {
    wrong_shape: bool,
}

/// A JSON object of the fields that are present.
fn obj(fields: Vec<(&str, Option<Value>)>) -> Value {
    let map: Map<String, Value> = fields.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect();
    Value::Object(map)
}

impl Writer {
    fn shape<T>(&mut self, s: &Shape<T>, f: impl FnOnce(&mut Self, &T) -> Value) -> Option<Value> {
        match s {
            Shape::Absent => None,
            Shape::Present(t) => Some(f(self, t)),
            Shape::Wrong(v) => {
                self.wrong_shape = true;
                Some(v.to_json())
            }
        }
    }

    fn list(&mut self, l: &List) -> Option<Value> {
        match l {
            List::Absent => None,
            List::Items(v) => Some(Value::Array(v.iter().map(Scalar::to_json).collect())),
            List::One(s) => Some(s.to_json()),
        }
    }

    fn imp(&mut self, imp: &Imp) -> Value {
        let banner = self.shape(&imp.banner, |w, b| {
            let format = w.shape(&b.format, |w, list| {
                Value::Array(list.iter().filter_map(|s| w.shape(s, |_, s| obj(size_fields(s)))).collect())
            });
            let mut fields: Vec<_> = b.size.as_ref().map(size_fields).unwrap_or_default();
            fields.extend([("format", format), ("pos", opt(&b.pos))]);
            obj(fields)
        });
        let video = self.shape(&imp.video, |_, v| {
            let mut fields: Vec<_> = v.size.as_ref().map(size_fields).unwrap_or_default();
            fields.extend([("minduration", opt(&v.minduration)), ("maxduration", opt(&v.maxduration))]);
            obj(fields)
        });
        obj(vec![
            ("id", opt(&imp.id)),
            ("banner", banner),
            ("video", video),
            ("audio", opt(&imp.audio)),
            ("native", opt(&imp.native)),
            ("tagid", opt(&imp.tagid)),
            ("bidfloor", opt(&imp.bidfloor)),
            ("bidfloorcur", opt(&imp.bidfloorcur)),
        ])
    }

    fn site(&mut self, s: &Site, domain_key: &str) -> Value {
        let publisher = self.shape(&s.publisher, |_, id| obj(vec![("id", opt(id))]));
        let cat = self.list(&s.cat);
        obj(vec![("id", opt(&s.id)), (domain_key, opt(&s.domain)), ("cat", cat), ("publisher", publisher)])
    }

    fn device(&mut self, d: &Device) -> Value {
        let geo = self.shape(&d.geo, |_, (country, utcoffset)| {
            obj(vec![("country", opt(country)), ("utcoffset", opt(utcoffset))])
        });
        obj(vec![
            ("ua", opt(&d.ua)),
            ("ip", opt(&d.ip)),
            ("devicetype", opt(&d.devicetype)),
            ("os", opt(&d.os)),
            ("geo", geo),
        ])
    }

    fn user(&mut self, u: &User) -> Value {
        let data = self.shape(&u.data, |w, data| {
            let items = data.iter().filter_map(|d| {
                w.shape(d, |w, data| {
                    let segment = w.shape(&data.segment, |w, segs| {
                        let segs = segs.iter().filter_map(|s| w.shape(s, |_, id| obj(vec![("id", opt(id))])));
                        Value::Array(segs.collect())
                    });
                    obj(vec![("id", opt(&data.id)), ("segment", segment)])
                })
            });
            Value::Array(items.collect())
        });
        obj(vec![("id", opt(&u.id)), ("buyeruid", opt(&u.buyeruid)), ("data", data)])
    }
}

/// The `w` and `h` fields of a size.
fn size_fields(s: &Size) -> Vec<(&'static str, Option<Value>)> {
    match s {
        Size::Known(i) => {
            let (w, h) = SIZES[usize::from(*i) % SIZES.len()];
            vec![("w", Some(json!(w))), ("h", Some(json!(h)))]
        }
        Size::Raw { w, h } => vec![("w", opt(w)), ("h", opt(h))],
    }
}

fn opt(s: &Option<Scalar>) -> Option<Value> {
    s.as_ref().map(Scalar::to_json)
}

impl Request {
    /// The request body, and whether a structure was replaced by a scalar (the only
    /// reason a body written here may fail to parse).
    pub fn to_json(&self) -> (Vec<u8>, bool) {
        let mut w = Writer::default();
        let imp = w.shape(&self.imp, |w, imps| {
            Value::Array(imps.iter().filter_map(|i| w.shape(i, |w, imp| w.imp(imp))).collect())
        });
        let site = w.shape(&self.site, |w, s| w.site(s, "domain"));
        let app = w.shape(&self.app, |w, s| w.site(s, "bundle"));
        let device = w.shape(&self.device, |w, d| w.device(d));
        let user = w.shape(&self.user, |w, u| w.user(u));
        let (cur, bcat, badv) = (w.list(&self.cur), w.list(&self.bcat), w.list(&self.badv));
        let mut body = obj(vec![
            ("id", opt(&self.id)),
            ("imp", imp),
            ("site", site),
            ("app", app),
            ("device", device),
            ("user", user),
            ("tmax", opt(&self.tmax)),
            ("at", opt(&self.at)),
            ("cur", cur),
            ("bcat", bcat),
            ("badv", badv),
            ("test", opt(&self.test)),
        ]);
        if let (Some((key, value)), Value::Object(map)) = (&self.unknown, &mut body) {
            // A known key would put a scalar where a structure may belong.
            if !KNOWN_FIELDS.contains(&key.as_str()) {
                map.insert(key.clone(), value.to_json());
            }
        }
        (serde_json::to_vec(&body).expect("a Value always serialises"), w.wrong_shape)
    }

    /// Auction time in Unix seconds.
    pub fn now_unix(&self) -> i64 {
        1_577_836_800 + i64::from(self.now_offset)
    }
}
