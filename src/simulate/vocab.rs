//! The fixed vocabularies of the synthetic exchange: countries and their time zones,
//! device models, ad slots, IAB categories, and the string tables requests are made of.
//!
//! Everything here is a `const` table, so an index into one of them (`u8`/`usize`) is a
//! compact, `Copy` stand-in for the string it names. Weights in a table need not sum to
//! one; samplers normalise them.

/// A country the exchange serves: traffic weight, time zones (UTC offset in minutes,
/// share of the country's users), languages (code, share) and first IPv4 octets.
#[derive(Debug)]
pub struct Country {
    pub code: &'static str,
    pub weight: f64,
    pub zones: &'static [(i32, f64)],
    pub languages: &'static [(&'static str, f64)],
    pub ip_octets: &'static [u8],
}

/// ISO-3166 alpha-3 countries with January (no daylight saving in the north) offsets.
pub const COUNTRIES: [Country; 10] = [
    Country {
        code: "USA",
        weight: 0.35,
        zones: &[(-300, 0.47), (-360, 0.29), (-420, 0.07), (-480, 0.17)],
        languages: &[("en", 0.87), ("es", 0.13)],
        ip_octets: &[24, 47, 63, 73, 98, 108, 174],
    },
    Country { code: "GBR", weight: 0.08, zones: &[(0, 1.0)], languages: &[("en", 1.0)], ip_octets: &[2, 51, 81, 86] },
    Country { code: "DEU", weight: 0.08, zones: &[(60, 1.0)], languages: &[("de", 1.0)], ip_octets: &[46, 79, 84, 91] },
    Country { code: "FRA", weight: 0.07, zones: &[(60, 1.0)], languages: &[("fr", 1.0)], ip_octets: &[5, 37, 78, 90] },
    Country {
        code: "CAN",
        weight: 0.05,
        zones: &[(-300, 0.6), (-360, 0.1), (-420, 0.12), (-480, 0.15), (-210, 0.03)],
        languages: &[("en", 0.78), ("fr", 0.22)],
        ip_octets: &[24, 70, 99, 142],
    },
    Country {
        code: "BRA",
        weight: 0.08,
        zones: &[(-180, 0.9), (-240, 0.1)],
        languages: &[("pt", 1.0)],
        ip_octets: &[177, 179, 186, 187],
    },
    Country {
        code: "IND",
        weight: 0.12,
        zones: &[(330, 1.0)],
        languages: &[("en", 0.7), ("hi", 0.3)],
        ip_octets: &[49, 106, 117, 157],
    },
    Country {
        code: "JPN",
        weight: 0.07,
        zones: &[(540, 1.0)],
        languages: &[("ja", 1.0)],
        ip_octets: &[60, 114, 126, 153],
    },
    Country {
        code: "AUS",
        weight: 0.04,
        zones: &[(660, 0.6), (600, 0.2), (630, 0.07), (480, 0.13)],
        languages: &[("en", 1.0)],
        ip_octets: &[1, 49, 101, 110],
    },
    Country {
        code: "ESP",
        weight: 0.06,
        zones: &[(60, 0.95), (0, 0.05)],
        languages: &[("es", 1.0)],
        ip_octets: &[31, 80, 83, 88],
    },
];

/// OpenRTB `device.devicetype` codes the exchange sends, indexed by "device class":
/// 0 PC, 1 CTV, 2 phone, 3 tablet. Weights are shares of users.
pub const DEVICE_TYPES: [(u8, f64); 4] = [(2, 0.30), (3, 0.05), (4, 0.55), (5, 0.10)];
pub const PC: u8 = 0;
pub const CTV: u8 = 1;
pub const PHONE: u8 = 2;
pub const TABLET: u8 = 3;

/// `device.os` values, lower case as written into requests and targeting.
pub const OS: [&str; 8] = ["ios", "android", "windows", "macos", "linux", "roku", "tvos", "tizen"];

/// One device a user can own: class (index into [`DEVICE_TYPES`]), OS (index into
/// [`OS`]), version, user agent, and its share within the class.
#[derive(Debug)]
pub struct DeviceModel {
    pub class: u8,
    pub os: u8,
    pub osv: &'static str,
    pub ua: &'static str,
    pub weight: f64,
}

/// Consistent device/OS/UA combinations: iOS only on phones and tablets, tvOS/Roku/Tizen
/// only on CTV, desktop OSes only on PCs.
pub const DEVICE_MODELS: [DeviceModel; 16] = [
    DeviceModel { class: PHONE, os: 0, osv: "18.1", weight: 0.25, ua: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1" },
    DeviceModel { class: PHONE, os: 0, osv: "17.6", weight: 0.20, ua: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1" },
    DeviceModel { class: PHONE, os: 1, osv: "14", weight: 0.30, ua: "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36" },
    DeviceModel { class: PHONE, os: 1, osv: "15", weight: 0.15, ua: "Mozilla/5.0 (Linux; Android 15; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36" },
    DeviceModel { class: PHONE, os: 1, osv: "13", weight: 0.10, ua: "Mozilla/5.0 (Linux; Android 13; moto g power 5G) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36" },
    DeviceModel { class: TABLET, os: 0, osv: "18.1", weight: 0.60, ua: "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1" },
    DeviceModel { class: TABLET, os: 1, osv: "14", weight: 0.40, ua: "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36" },
    DeviceModel { class: PC, os: 2, osv: "10", weight: 0.50, ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36" },
    DeviceModel { class: PC, os: 2, osv: "11", weight: 0.20, ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0" },
    DeviceModel { class: PC, os: 3, osv: "15.1", weight: 0.25, ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15" },
    DeviceModel { class: PC, os: 4, osv: "6.8", weight: 0.05, ua: "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0" },
    DeviceModel { class: CTV, os: 5, osv: "14.0", weight: 0.35, ua: "Roku/DVP-14.0 (14.0.4.5021)" },
    DeviceModel { class: CTV, os: 6, osv: "18.1", weight: 0.20, ua: "AppleTV14,1/18.1" },
    DeviceModel { class: CTV, os: 1, osv: "12", weight: 0.25, ua: "Mozilla/5.0 (Linux; Android 12; BRAVIA 4K VH2 Build/STT1.211025.001.Z4) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.230 Safari/537.36" },
    DeviceModel { class: CTV, os: 7, osv: "7.0", weight: 0.20, ua: "Mozilla/5.0 (SMART-TV; LINUX; Tizen 7.0) AppleWebKit/537.36 (KHTML, like Gecko) 94.0.4606.31/7.0 TV Safari/537.36" },
    DeviceModel { class: TABLET, os: 1, osv: "13", weight: 0.05, ua: "Mozilla/5.0 (Linux; Android 13; Lenovo TB-X606F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36" },
];

/// Number of (country, device model) pairs: the "reach keys" targeting is precomputed on.
pub const REACH_KEYS: usize = COUNTRIES.len() * DEVICE_MODELS.len();

/// Banner sizes (IAB standard units). A slot index below `BANNER_SIZES.len()` is a banner
/// of that size; [`VIDEO`] and [`NATIVE`] follow.
pub const BANNER_SIZES: [(u32, u32); 8] =
    [(300, 250), (728, 90), (320, 50), (300, 600), (160, 600), (970, 250), (336, 280), (320, 480)];
pub const VIDEO: usize = 8;
pub const NATIVE: usize = 9;
pub const SLOTS: usize = 10;
const _: () = assert!(BANNER_SIZES.len() == VIDEO && NATIVE == VIDEO + 1 && SLOTS == NATIVE + 1);

/// Relative share of each banner size among banner creatives (advertisers cut creatives
/// for the sizes that sell).
pub const CREATIVE_SIZE_WEIGHTS: [f64; 8] = [0.30, 0.14, 0.22, 0.06, 0.05, 0.04, 0.07, 0.12];

/// Second size an imp of this banner size sometimes also accepts in `format[]`.
pub const ALT_SIZE: [Option<usize>; 8] = [Some(6), Some(5), None, Some(4), Some(3), Some(1), Some(0), None];

/// Imp slot mix per device class (index as in [`DEVICE_TYPES`]).
pub const IMP_SLOTS: [&[(usize, f64)]; 4] = [
    &[(1, 0.18), (0, 0.25), (3, 0.08), (4, 0.07), (5, 0.05), (6, 0.07), (VIDEO, 0.15), (NATIVE, 0.15)],
    &[(VIDEO, 1.0)],
    &[(2, 0.30), (0, 0.25), (7, 0.10), (VIDEO, 0.15), (NATIVE, 0.20)],
    &[(1, 0.20), (0, 0.30), (6, 0.08), (7, 0.05), (2, 0.02), (VIDEO, 0.15), (NATIVE, 0.20)],
];

/// Video player sizes and `plcmt` (1 instream, 3 interstitial, 4 standalone) per device class.
pub const VIDEO_PLAYERS: [&[(u32, u32, u8, f64)]; 4] = [
    &[(640, 360, 1, 0.5), (1280, 720, 1, 0.3), (400, 300, 4, 0.2)],
    &[(1920, 1080, 1, 1.0)],
    &[(320, 480, 3, 0.5), (640, 360, 1, 0.3), (400, 300, 4, 0.2)],
    &[(1024, 768, 3, 0.4), (1280, 720, 1, 0.6)],
];

/// `[minduration, maxduration]` windows (seconds) exchanges send, with weights.
pub const VIDEO_WINDOWS: [(u32, u32, f64); 5] =
    [(5, 30, 0.40), (5, 15, 0.25), (15, 30, 0.15), (1, 6, 0.10), (5, 60, 0.10)];

/// Video creative durations (seconds) with weights, and the sizes they are cut for.
pub const VIDEO_DURATIONS: [(u32, f64); 3] = [(6, 0.25), (15, 0.40), (30, 0.35)];
pub const VIDEO_CREATIVE_SIZES: [(u32, u32); 3] = [(1920, 1080), (1280, 720), (640, 360)];

/// Banner `pos` values with weights (0 unknown, 1 above the fold, 3 below, 4 header,
/// 5 footer, 7 full screen). Interstitials (320x480) are always 7.
pub const POSITIONS: [(u8, f64); 5] = [(0, 0.22), (1, 0.40), (3, 0.28), (4, 0.05), (5, 0.05)];
pub const FULLSCREEN: u8 = 7;

/// Native 1.2 request documents (sent as the `native.request` string).
pub const NATIVE_REQUESTS: [&str; 3] = [
    r#"{"ver":"1.2","context":1,"plcmttype":1,"plcmtcnt":1,"assets":[{"id":1,"required":1,"title":{"len":90}},{"id":2,"required":1,"img":{"type":3,"wmin":600,"hmin":314}},{"id":3,"required":0,"data":{"type":2,"len":140}},{"id":4,"required":1,"data":{"type":1,"len":25}}],"eventtrackers":[{"event":1,"methods":[1]}]}"#,
    r#"{"ver":"1.2","context":2,"plcmttype":4,"plcmtcnt":1,"assets":[{"id":1,"required":1,"title":{"len":60}},{"id":2,"required":1,"img":{"type":3,"w":1200,"h":627}},{"id":4,"required":1,"data":{"type":1,"len":25}}],"eventtrackers":[{"event":1,"methods":[1]}]}"#,
    r#"{"ver":"1.2","context":1,"contextsubtype":12,"plcmttype":1,"plcmtcnt":1,"assets":[{"id":1,"required":1,"title":{"len":90}},{"id":2,"required":0,"img":{"type":1,"w":80,"h":80}},{"id":3,"required":1,"data":{"type":2,"len":200}},{"id":5,"required":0,"data":{"type":12,"len":15}}]}"#,
];

/// IAB content taxonomy 1.0 tier-1 categories, `TIER1[i]` is `IAB{i+1}`.
pub const TIER1: [&str; 26] = [
    "IAB1", "IAB2", "IAB3", "IAB4", "IAB5", "IAB6", "IAB7", "IAB8", "IAB9", "IAB10", "IAB11", "IAB12", "IAB13",
    "IAB14", "IAB15", "IAB16", "IAB17", "IAB18", "IAB19", "IAB20", "IAB21", "IAB22", "IAB23", "IAB24", "IAB25",
    "IAB26",
];

/// Interests users can have: tier-1 categories `IAB1`..`IAB23` (the first 23 of
/// [`TIER1`]); `SEGMENTS[i]` is the segment id that reveals interest `i`.
pub const INTERESTS: usize = 23;
pub const SEGMENTS: [&str; INTERESTS] = [
    "seg-IAB1",
    "seg-IAB2",
    "seg-IAB3",
    "seg-IAB4",
    "seg-IAB5",
    "seg-IAB6",
    "seg-IAB7",
    "seg-IAB8",
    "seg-IAB9",
    "seg-IAB10",
    "seg-IAB11",
    "seg-IAB12",
    "seg-IAB13",
    "seg-IAB14",
    "seg-IAB15",
    "seg-IAB16",
    "seg-IAB17",
    "seg-IAB18",
    "seg-IAB19",
    "seg-IAB20",
    "seg-IAB21",
    "seg-IAB22",
    "seg-IAB23",
];

/// How popular each interest is among users (index as in [`SEGMENTS`]).
pub const INTEREST_WEIGHTS: [f64; INTERESTS] = [
    0.10, 0.05, 0.04, 0.02, 0.03, 0.04, 0.06, 0.06, 0.08, 0.04, 0.02, 0.08, 0.05, 0.02, 0.02, 0.03, 0.09, 0.05, 0.07,
    0.05, 0.02, 0.06, 0.01,
];

/// Content categories publishers carry: `IAB1`..`IAB24` (index into [`TIER1`]), weights.
pub const CONTENT_CATS: usize = 24;
pub const CONTENT_WEIGHTS: [f64; CONTENT_CATS] = [
    0.10, 0.04, 0.04, 0.015, 0.02, 0.03, 0.05, 0.05, 0.08, 0.03, 0.02, 0.14, 0.04, 0.02, 0.02, 0.02, 0.10, 0.04, 0.07,
    0.04, 0.015, 0.03, 0.01, 0.02,
];

/// Words publisher domains are made of, one per content category.
pub const CONTENT_WORDS: [&str; CONTENT_CATS] = [
    "showbiz",
    "autoworld",
    "bizwire",
    "jobsboard",
    "learnhub",
    "parenting",
    "healthline",
    "recipes",
    "hobbyist",
    "homegarden",
    "politico",
    "dailynews",
    "moneytalk",
    "community",
    "sciencenow",
    "petcare",
    "sportszone",
    "stylemag",
    "techradar",
    "travelguide",
    "realty",
    "dealfinder",
    "faithlife",
    "misc",
];

/// Advertiser categories: tier-1 `IAB1`..`IAB23` first (same index as the interest), then
/// a few tier-2 ones; `.1` is the tier-1 parent (interest index).
pub const AD_CATEGORIES: [(&str, u8); 35] = [
    ("IAB1", 0),
    ("IAB2", 1),
    ("IAB3", 2),
    ("IAB4", 3),
    ("IAB5", 4),
    ("IAB6", 5),
    ("IAB7", 6),
    ("IAB8", 7),
    ("IAB9", 8),
    ("IAB10", 9),
    ("IAB11", 10),
    ("IAB12", 11),
    ("IAB13", 12),
    ("IAB14", 13),
    ("IAB15", 14),
    ("IAB16", 15),
    ("IAB17", 16),
    ("IAB18", 17),
    ("IAB19", 18),
    ("IAB20", 19),
    ("IAB21", 20),
    ("IAB22", 21),
    ("IAB23", 22),
    ("IAB1-5", 0),
    ("IAB1-6", 0),
    ("IAB2-3", 1),
    ("IAB7-39", 6),
    ("IAB8-5", 7),
    ("IAB8-18", 7),
    ("IAB9-30", 8),
    ("IAB13-7", 12),
    ("IAB17-12", 16),
    ("IAB18-3", 17),
    ("IAB19-6", 18),
    ("IAB20-18", 19),
];

/// How often advertisers fall in each of [`AD_CATEGORIES`].
pub const AD_CATEGORY_WEIGHTS: [f64; 35] = [
    0.05, 0.06, 0.04, 0.02, 0.03, 0.03, 0.04, 0.04, 0.04, 0.03, 0.01, 0.02, 0.05, 0.01, 0.01, 0.02, 0.04, 0.04, 0.05,
    0.04, 0.02, 0.07, 0.01, 0.02, 0.02, 0.02, 0.01, 0.02, 0.01, 0.03, 0.02, 0.02, 0.02, 0.02, 0.02,
];

/// Categories exchanges put in `bcat` (tier-1 entries also block their tier-2 children).
pub const BCAT_POOL: [&str; 12] =
    ["IAB25", "IAB26", "IAB7-39", "IAB8-5", "IAB8-18", "IAB8", "IAB11", "IAB13", "IAB14", "IAB23", "IAB9-9", "IAB7"];

/// `tmax` values (ms) exchanges send.
pub const TMAX: [u16; 6] = [100, 120, 150, 200, 250, 300];
