//! Campaign targeting compiled for selection: bit sets over the catalog's own country
//! and OS vocabularies, built once per catalog load.
//!
//! [`Targeting::matches`] compares strings, case-insensitively, for every candidate of
//! every imp: on the default catalog that was the largest single cost of selection
//! (`perf` of `benches/handler.rs`). Here the request's country and OS are looked up
//! once per imp ([`RequestReach::of`]), and a campaign is then three bit tests
//! ([`CompiledTargeting::matches`]).
//!
//! Invariant: `CompiledTargeting::matches(RequestReach::of(..))` answers exactly what
//! `Targeting::matches` answers for the same request (empty lists match everything,
//! absent request attributes match only untargeted dimensions). A campaign whose lists
//! do not fit the bit sets (more than 256 countries or 64 OS names in the catalog, a
//! device type of 64 or more) keeps the string comparison.

use super::Targeting;
use std::collections::HashMap;

/// Country codes in the catalog's vocabulary at most (bits of [`Countries`]).
const MAX_COUNTRIES: usize = 256;
/// OS names and device types at most (bits of a `u64`).
const MAX_OS: usize = 64;
const MAX_DEVICE_TYPE: u8 = 64;
/// Longest country or OS name looked up without allocating (longer ones fall back to a scan).
const KEY_BUF: usize = 32;

type Countries = [u64; MAX_COUNTRIES / 64];

/// The catalog's countries and OS names, upper-cased, each with its bit.
#[derive(Debug, Default)]
pub struct Vocabulary {
    countries: HashMap<Vec<u8>, u16>,
    os: HashMap<Vec<u8>, u16>,
}

/// A request's targeting attributes as the catalog knows them.
#[derive(Debug, Clone, Copy)]
pub struct RequestReach<'a> {
    country: Lookup,
    device_type: Option<u8>,
    os: Lookup,
    /// The raw values, for campaigns that keep the string comparison.
    raw: (Option<&'a str>, Option<u8>, Option<&'a str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// The request does not say.
    Absent,
    /// A value no campaign targets.
    Unknown,
    Bit(u16),
}

/// One campaign's targeting; `None` in a dimension means untargeted.
#[derive(Debug, Clone)]
pub enum CompiledTargeting {
    Bits {
        countries: Option<Box<Countries>>,
        device_types: Option<u64>,
        os: Option<u64>,
    },
    /// The lists do not fit the bit sets: compare strings.
    Exact(Targeting),
}

impl Vocabulary {
    /// The vocabulary of every campaign's targeting.
    pub fn of<'t>(targetings: impl Iterator<Item = &'t Targeting>) -> Vocabulary {
        let mut v = Vocabulary::default();
        for t in targetings {
            for c in &t.countries {
                let n = v.countries.len() as u16;
                v.countries.entry(c.to_ascii_uppercase().into_bytes()).or_insert(n);
            }
            for o in &t.os {
                let n = v.os.len() as u16;
                v.os.entry(o.to_ascii_uppercase().into_bytes()).or_insert(n);
            }
        }
        v
    }

    pub fn compile(&self, t: &Targeting) -> CompiledTargeting {
        let fits = self.countries.len() <= MAX_COUNTRIES
            && self.os.len() <= MAX_OS
            && t.device_types.iter().all(|&d| d < MAX_DEVICE_TYPE);
        if !fits {
            return CompiledTargeting::Exact(t.clone());
        }
        let countries = (!t.countries.is_empty()).then(|| {
            let mut bits: Box<Countries> = Box::default();
            for c in &t.countries {
                let b = usize::from(self.countries[c.to_ascii_uppercase().as_bytes()]);
                bits[b / 64] |= 1 << (b % 64);
            }
            bits
        });
        let device_types = (!t.device_types.is_empty()).then(|| t.device_types.iter().fold(0u64, |m, &d| m | 1 << d));
        let os = (!t.os.is_empty())
            .then(|| t.os.iter().fold(0u64, |m, o| m | 1 << self.os[o.to_ascii_uppercase().as_bytes()]));
        CompiledTargeting::Bits { countries, device_types, os }
    }

    /// Country slots of the selector's sharded index lists: 0 for a request whose country
    /// no campaign names (or that names none), `1 + b` for country `b` of the vocabulary.
    pub fn country_slots(&self) -> usize {
        1 + self.countries.len()
    }

    /// The slot of a request's country (see [`Vocabulary::country_slots`]).
    pub fn country_slot(&self, country: Option<&str>) -> usize {
        match lookup(&self.countries, country) {
            Lookup::Bit(b) => 1 + usize::from(b),
            Lookup::Absent | Lookup::Unknown => 0,
        }
    }

    /// The slots of the countries a targeting names, each once (`"usa"` and `"USA"` are
    /// one); `None` when it names none (every country may be shown the campaign).
    pub fn slots_of(&self, t: &Targeting) -> Option<Vec<usize>> {
        (!t.countries.is_empty()).then(|| {
            let mut slots: Vec<usize> = t
                .countries
                .iter()
                .map(|c| 1 + usize::from(self.countries[c.to_ascii_uppercase().as_bytes()]))
                .collect();
            slots.sort_unstable();
            slots.dedup();
            slots
        })
    }

    /// The request's attributes in this vocabulary; no allocation for names up to 32 bytes.
    pub fn request<'a>(
        &self,
        country: Option<&'a str>,
        device_type: Option<u8>,
        os: Option<&'a str>,
    ) -> RequestReach<'a> {
        RequestReach {
            country: lookup(&self.countries, country),
            device_type,
            os: lookup(&self.os, os),
            raw: (country, device_type, os),
        }
    }
}

fn lookup(table: &HashMap<Vec<u8>, u16>, value: Option<&str>) -> Lookup {
    let Some(value) = value else { return Lookup::Absent };
    let bytes = value.as_bytes();
    let found = if bytes.len() <= KEY_BUF {
        let mut buf = [0u8; KEY_BUF];
        let key = &mut buf[..bytes.len()];
        key.copy_from_slice(bytes);
        key.make_ascii_uppercase();
        table.get(&key[..]).copied()
    } else {
        table.iter().find(|(k, _)| k.eq_ignore_ascii_case(bytes)).map(|(_, &b)| b)
    };
    found.map_or(Lookup::Unknown, Lookup::Bit)
}

impl CompiledTargeting {
    /// True when a request with these attributes may be shown this campaign.
    pub fn matches(&self, r: &RequestReach<'_>) -> bool {
        match self {
            CompiledTargeting::Exact(t) => t.matches(r.raw.0, r.raw.1, r.raw.2),
            CompiledTargeting::Bits { countries, device_types, os } => {
                let country_ok = countries.as_ref().is_none_or(|bits| match r.country {
                    Lookup::Bit(b) => bits[usize::from(b) / 64] >> (b % 64) & 1 == 1,
                    Lookup::Absent | Lookup::Unknown => false,
                });
                let device_ok =
                    device_types.is_none_or(|m| r.device_type.is_some_and(|d| d < MAX_DEVICE_TYPE && m >> d & 1 == 1));
                let os_ok = os.is_none_or(|m| match r.os {
                    Lookup::Bit(b) => m >> b & 1 == 1,
                    Lookup::Absent | Lookup::Unknown => false,
                });
                country_ok && device_ok && os_ok
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn targeting<R: Rng>(rng: &mut R, countries: &[&str], os: &[&str]) -> Targeting {
        let pick = |rng: &mut R, from: &[&str]| -> Vec<String> {
            from.iter().filter(|_| rng.gen_bool(0.3)).map(|s| s.to_string()).collect()
        };
        Targeting {
            countries: pick(rng, countries),
            device_types: (1..8).filter(|_| rng.gen_bool(0.3)).collect(),
            os: pick(rng, os),
        }
    }

    /// The compiled form answers what the string comparison answers, for targeted and
    /// untargeted campaigns, known, unknown, absent and differently-cased values.
    #[test]
    fn compiled_targeting_answers_as_the_strings_do() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        let countries = ["USA", "GBR", "deu", "Fra", "BRA"];
        let oses = ["ios", "Android", "windows"];
        let campaigns: Vec<Targeting> = (0..200).map(|_| targeting(&mut rng, &countries, &oses)).collect();
        let vocab = Vocabulary::of(campaigns.iter());
        let compiled: Vec<_> = campaigns.iter().map(|t| vocab.compile(t)).collect();
        assert!(compiled.iter().all(|c| matches!(c, CompiledTargeting::Bits { .. })));
        let req_countries = [None, Some("USA"), Some("usa"), Some("DEU"), Some("JPN"), Some("")];
        let req_os =
            [None, Some("iOS"), Some("android"), Some("linux"), Some("a-very-long-operating-system-name-over-32")];
        let (mut checked, mut matched) = (0, 0);
        for country in req_countries {
            for device in [None, Some(1u8), Some(4), Some(7), Some(200)] {
                for os in req_os {
                    let r = vocab.request(country, device, os);
                    for (t, c) in campaigns.iter().zip(&compiled) {
                        let want = t.matches(country, device, os);
                        assert_eq!(c.matches(&r), want, "{t:?} vs {country:?} {device:?} {os:?}");
                        checked += 1;
                        matched += usize::from(want);
                    }
                }
            }
        }
        assert!(matched > checked / 50 && matched < checked, "{matched} of {checked}: the cases must go both ways");
    }

    /// A request's country slot is the one its campaigns' countries were given, in any
    /// case; a country named twice gets one slot (or the split lists would hold its
    /// creatives twice); unknown and absent countries share slot 0.
    #[test]
    fn country_slots_of_campaigns_and_requests_agree() {
        let t = Targeting { countries: vec!["USA".into(), "usa".into(), "Gbr".into()], ..Targeting::default() };
        let vocab = Vocabulary::of(std::iter::once(&t));
        assert_eq!(vocab.country_slots(), 3);
        let slots = vocab.slots_of(&t).unwrap();
        assert_eq!(slots.len(), 2);
        assert!(slots.contains(&vocab.country_slot(Some("uSa"))) && slots.contains(&vocab.country_slot(Some("GBR"))));
        assert_eq!((vocab.country_slot(Some("JPN")), vocab.country_slot(None)), (0, 0));
        assert_eq!(vocab.slots_of(&Targeting::default()), None);
    }

    #[test]
    fn lists_beyond_the_bit_sets_keep_the_string_comparison() {
        let t = Targeting { device_types: vec![1, 100], ..Targeting::default() };
        let vocab = Vocabulary::of(std::iter::once(&t));
        let c = vocab.compile(&t);
        assert!(matches!(c, CompiledTargeting::Exact(_)));
        assert!(c.matches(&vocab.request(None, Some(100), None)));
        assert!(!c.matches(&vocab.request(None, Some(2), None)));
    }
}
