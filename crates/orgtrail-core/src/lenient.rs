//! Lenient field decoders for messy real-world CloudTrail JSON.
//!
//! Real data bends the schema: `readOnly` as the string `"True"`, `resources` as a list of
//! strings, `requestParameters: null`. None of that makes an event invalid; a field of an
//! unexpected shape is simply not indexed. Only the fields an event cannot do without
//! (eventID, eventTime, ...) are checked strictly, by the caller, using [`Val`].
//!
//! Every decoder here accepts any JSON value (via `deserialize_any`) and skips what it does not
//! want with `IgnoredAny`, so no input shape produces a serde type error, and no error message
//! ever quotes event content.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The JSON type of a value, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonKind {
    Null,
    Bool,
    Number,
    Array,
    Object,
}

impl JsonKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            JsonKind::Null => "null",
            JsonKind::Bool => "a boolean",
            JsonKind::Number => "a number",
            JsonKind::Array => "an array",
            JsonKind::Object => "an object",
        }
    }
}

/// Any JSON value, keeping strings (borrowed when unescaped) and only the kind of the rest.
#[derive(Debug)]
pub(crate) enum Val<'a> {
    Str(Cow<'a, str>),
    Other(JsonKind),
}

impl<'a> Val<'a> {
    pub(crate) fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Val::Str(s) => Some(s),
            Val::Other(_) => None,
        }
    }
}

struct ValVisitor<'a>(PhantomData<&'a ()>);

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

impl<'de: 'a, 'a> Visitor<'de> for ValVisitor<'a> {
    type Value = Val<'a>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Val::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Val::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Val::Str(Cow::Owned(v)))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Val::Other(JsonKind::Bool))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Val::Other(JsonKind::Number))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Val::Other(JsonKind::Number))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Val::Other(JsonKind::Number))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Val::Other(JsonKind::Null))
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Val::Other(JsonKind::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq)?;
        Ok(Val::Other(JsonKind::Array))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map)?;
        Ok(Val::Other(JsonKind::Object))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Val<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValVisitor(PhantomData))
    }
}

/// Any value, null included, of a member that may be absent: unlike [`LStr`], tells an absent
/// member (`None`, by `#[serde(default)]`) from one that is there and is not a string.
#[derive(Debug, Default)]
pub(crate) struct Seen<'a>(pub(crate) Option<Val<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Seen<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Seen(Some(Val::deserialize(d)?)))
    }
}

/// A string if the value is one, else nothing.
#[derive(Debug, Default)]
pub(crate) struct LStr<'a>(pub(crate) Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for LStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(LStr(Val::deserialize(d)?.into_str()))
    }
}

impl LStr<'_> {
    /// The string inline when short (no allocation), else on the heap.
    pub(crate) fn compact(self) -> Option<compact_str::CompactString> {
        self.0.map(compact_str::CompactString::from)
    }
}

/// A boolean if the value is one, or the string "true"/"false" in any case; else nothing.
#[derive(Debug, Default)]
pub(crate) struct LBool(pub(crate) Option<bool>);

struct LBoolVisitor;

impl<'de> Visitor<'de> for LBoolVisitor {
    type Value = LBool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<LBool, E> {
        Ok(LBool(Some(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<LBool, E> {
        Ok(LBool(if v.eq_ignore_ascii_case("true") {
            Some(true)
        } else if v.eq_ignore_ascii_case("false") {
            Some(false)
        } else {
            None
        }))
    }
    fn visit_i64<E>(self, _: i64) -> Result<LBool, E> {
        Ok(LBool(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<LBool, E> {
        Ok(LBool(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<LBool, E> {
        Ok(LBool(None))
    }
    fn visit_unit<E>(self) -> Result<LBool, E> {
        Ok(LBool(None))
    }
    fn visit_none<E>(self) -> Result<LBool, E> {
        Ok(LBool(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<LBool, A::Error> {
        drain_seq(seq)?;
        Ok(LBool(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LBool, A::Error> {
        drain_map(map)?;
        Ok(LBool(None))
    }
}

impl<'de> Deserialize<'de> for LBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LBoolVisitor)
    }
}

/// `T` decoded from a JSON object; any other value is skipped.
///
/// `T` must itself be lenient (all of its fields of the lenient types in this module), so that
/// decoding an object can fail only on malformed JSON or a duplicated key.
#[derive(Debug)]
pub(crate) struct LObj<T>(pub(crate) Option<T>);

impl<T> Default for LObj<T> {
    fn default() -> Self {
        LObj(None)
    }
}

struct LObjVisitor<T>(PhantomData<T>);

macro_rules! skip_scalars {
    ($ret:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok($ret)
        }
    };
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for LObjVisitor<T> {
    type Value = LObj<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    skip_scalars!(LObj(None));
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq)?;
        Ok(LObj(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(|t| LObj(Some(t)))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LObj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LObjVisitor(PhantomData))
    }
}

/// A list of `T` decoded from a JSON array; any other value gives an empty list.
/// `T` must be lenient (accept any value), e.g. [`LObj`] or [`LStr`].
#[derive(Debug)]
pub(crate) struct LList<T>(pub(crate) Vec<T>);

impl<T> Default for LList<T> {
    fn default() -> Self {
        LList(Vec::new())
    }
}

struct LListVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for LListVisitor<T> {
    type Value = LList<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    skip_scalars!(LList(Vec::new()));
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Vec::<T>::deserialize(SeqAccessDeserializer::new(seq)).map(LList)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map)?;
        Ok(LList(Vec::new()))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LListVisitor(PhantomData))
    }
}
