//! Lenient readers for scalar fields, because exchanges are sloppy: numbers arrive as
//! strings (`"bidfloor":"0.5"`), ids as numbers, booleans as 0/1.
//!
//! Every reader here accepts any JSON value and never fails on a wrong type: a value
//! it cannot use reads as absent (spec §2.6: ignore what you do not understand), so a
//! quirky field costs the field, not the request. Objects and arrays in scalar
//! positions are consumed and dropped.

use super::list::List;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// One JSON value as far as a scalar field cares.
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
    Other,
}

/// Visitor methods for the JSON types a reader does not take: each consumes the value
/// (objects and arrays entry by entry) and answers `$empty`.
macro_rules! not_taken {
    ($lt:lifetime, $empty:expr; $($kind:ident)*) => { $( not_taken!(@ $lt, $empty, $kind); )* };
    (@ $lt:lifetime, $empty:expr, str) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { Ok($empty) }
    };
    (@ $lt:lifetime, $empty:expr, i64) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { Ok($empty) }
    };
    (@ $lt:lifetime, $empty:expr, u64) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { Ok($empty) }
    };
    (@ $lt:lifetime, $empty:expr, f64) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { Ok($empty) }
    };
    (@ $lt:lifetime, $empty:expr, bool) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { Ok($empty) }
    };
    (@ $lt:lifetime, $empty:expr, unit) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> { Ok($empty) }
    };
    (@ $lt:lifetime, $empty:expr, none) => {
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> { Ok($empty) }
    };
    (@ $lt:lifetime, $empty:expr, map) => {
        fn visit_map<A: MapAccess<$lt>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<::serde::de::IgnoredAny, ::serde::de::IgnoredAny>()?.is_some() {}
            Ok($empty)
        }
    };
    (@ $lt:lifetime, $empty:expr, seq) => {
        fn visit_seq<A: SeqAccess<$lt>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<::serde::de::IgnoredAny>()?.is_some() {}
            Ok($empty)
        }
    };
}
pub(super) use not_taken;

/// Reads any JSON value as a [`Scalar`]; arrays and objects are consumed and read as
/// `Other`.
struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Uint(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

impl<'a> Scalar<'a> {
    fn as_f64(&self) -> Option<f64> {
        let v = match self {
            Scalar::Str(s) => s.trim().parse::<f64>().ok()?,
            Scalar::Int(i) => *i as f64,
            Scalar::Uint(u) => *u as f64,
            Scalar::Float(f) => *f,
            Scalar::Bool(_) | Scalar::Other => return None,
        };
        v.is_finite().then_some(v)
    }

    fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            Scalar::Uint(u) => i64::try_from(*u).ok(),
            Scalar::Bool(b) => Some(i64::from(*b)),
            Scalar::Str(s) => {
                let s = s.trim();
                s.parse::<i64>().ok().or_else(|| whole(s.parse::<f64>().ok()?))
            }
            Scalar::Float(f) => whole(*f),
            Scalar::Other => None,
        }
    }

    fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Str(s) => Some(s),
            Scalar::Int(i) => Some(Cow::Owned(i.to_string())),
            Scalar::Uint(u) => Some(Cow::Owned(u.to_string())),
            // A whole float reads as the integer it holds (`1.0` and `-0` are "1" and
            // "0"), so parsers that differ on int vs float for such numbers agree.
            Scalar::Float(f) => Some(Cow::Owned(match whole(f) {
                Some(i) => i.to_string(),
                None => f.to_string(),
            })),
            Scalar::Bool(_) | Scalar::Other => None,
        }
    }
}

/// A float that holds a whole number, as an integer.
fn whole(f: f64) -> Option<i64> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// A string field; numbers are kept as their decimal text.
pub fn opt_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    Ok(d.deserialize_any(ScalarVisitor)?.into_str())
}

/// A finite float; numeric strings accepted.
pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(d.deserialize_any(ScalarVisitor)?.as_f64())
}

/// An integer that fits `T`; numeric strings, whole floats and booleans accepted.
pub fn opt_int<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(d.deserialize_any(ScalarVisitor)?.as_i64().and_then(|i| T::try_from(i).ok()))
}

/// A list of strings. A lone string reads as a one-element list; elements that are
/// not strings or numbers are dropped; anything else reads as empty.
pub fn str_list<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<List<Cow<'de, str>, N>, D::Error> {
    struct ListVisitor<const N: usize>;
    impl<'de, const N: usize> Visitor<'de> for ListVisitor<N> {
        type Value = List<Cow<'de, str>, N>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of strings")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = List::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(item) = seq.next_element_seed(ScalarSeed)? {
                if let Some(s) = item.into_str() {
                    out.push(s);
                }
            }
            Ok(out)
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(std::iter::once(Cow::Borrowed(v)).collect())
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(std::iter::once(Cow::Owned(v.to_owned())).collect())
        }
        not_taken!('de, List::new(); map i64 u64 f64 bool unit);
    }
    d.deserialize_any(ListVisitor::<N>)
}

struct ScalarSeed;

impl<'de> de::DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// A flag: `true`/`false`, `1`/`0` (numbers or strings, as exchanges send them).
/// Any other value reads as absent.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match d.deserialize_any(ScalarVisitor)? {
        Scalar::Bool(b) => Some(b),
        Scalar::Str(s) => match s.trim() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        },
        other => match other.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
    })
}

/// A list of integers that fit `T`; numeric strings accepted, other elements dropped.
/// A lone number reads as a one-element list; anything else as empty.
pub fn int_list<'de, D: Deserializer<'de>, T: TryFrom<i64>, const N: usize>(d: D) -> Result<List<T, N>, D::Error> {
    struct ListVisitor<T, const N: usize>(std::marker::PhantomData<T>);
    impl<'de, T: TryFrom<i64>, const N: usize> Visitor<'de> for ListVisitor<T, N> {
        type Value = List<T, N>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of integers")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = List::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(item) = seq.next_element_seed(ScalarSeed)? {
                if let Some(v) = item.as_i64().and_then(|i| T::try_from(i).ok()) {
                    out.push(v);
                }
            }
            Ok(out)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(T::try_from(v).ok().into_iter().collect())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(i64::try_from(v).ok().and_then(|v| T::try_from(v).ok()).into_iter().collect())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(whole(v).and_then(|v| T::try_from(v).ok()).into_iter().collect())
        }
        not_taken!('de, List::new(); map str bool unit);
    }
    d.deserialize_any(ListVisitor::<T, N>(std::marker::PhantomData))
}

/// A list of objects; a value that is not a list (or `null`) reads as empty, and an
/// element that is not an object is dropped, so one bad entry costs that entry.
pub fn obj_list<'de, D: Deserializer<'de>, T: de::Deserialize<'de>, const N: usize>(
    d: D,
) -> Result<List<T, N>, D::Error> {
    struct ListVisitor<T, const N: usize>(std::marker::PhantomData<T>);
    impl<'de, T: de::Deserialize<'de>, const N: usize> Visitor<'de> for ListVisitor<T, N> {
        type Value = List<T, N>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = List::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(item) = seq.next_element::<Lax<T>>()? {
                if let Lax(Some(v)) = item {
                    out.push(v);
                }
            }
            Ok(out)
        }
        not_taken!('de, List::new(); map str i64 u64 f64 bool unit);
    }
    d.deserialize_any(ListVisitor::<T, N>(std::marker::PhantomData))
}

/// An object field: a value of another type (a string, a number, a list) reads as
/// absent instead of failing the request.
pub fn opt_obj<'de, D: Deserializer<'de>, T: de::Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(<Lax<T> as de::Deserialize>::deserialize(d)?.0)
}

/// `T` when the value is an object, else nothing (the value is consumed either way).
struct Lax<T>(Option<T>);

impl<'de, T: de::Deserialize<'de>> de::Deserialize<'de> for Lax<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LaxVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: de::Deserialize<'de>> Visitor<'de> for LaxVisitor<T> {
            type Value = Lax<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|v| Lax(Some(v)))
            }
            not_taken!('de, Lax(None); seq str i64 u64 f64 bool unit none);
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(LaxVisitor(std::marker::PhantomData))
    }
}

/// An `ext` object, kept as parsed with its strings borrowed from the body.
pub fn ext<'de, D: Deserializer<'de>>(d: D) -> Result<Option<simd_json::BorrowedValue<'de>>, D::Error> {
    <Option<simd_json::BorrowedValue<'de>> as de::Deserialize>::deserialize(d)
}
