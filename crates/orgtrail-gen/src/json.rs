//! A minimal, insertion-ordered JSON tree for request/response payloads.
//!
//! `serde_json::Value` sorts object keys unless the `preserve_order` feature is
//! on, and cargo feature unification could switch that on from an unrelated
//! crate, changing our bytes. This type always keeps the order in which fields
//! were written (CloudTrail's own order where we know it) and borrows strings
//! from the generator's pools where it can.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

#[derive(Debug, Clone)]
pub(crate) enum J<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Str(&'a str),
    Own(String),
    Arr(Vec<J<'a>>),
    Obj(Vec<(&'static str, J<'a>)>),
}

impl Serialize for J<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            J::Null => s.serialize_unit(),
            J::Bool(b) => s.serialize_bool(*b),
            J::Int(i) => s.serialize_i64(*i),
            J::Str(v) => s.serialize_str(v),
            J::Own(v) => s.serialize_str(v),
            J::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            J::Obj(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'a> From<&'a str> for J<'a> {
    fn from(v: &'a str) -> Self {
        J::Str(v)
    }
}
impl<'a> From<&'a String> for J<'a> {
    fn from(v: &'a String) -> Self {
        J::Str(v.as_str())
    }
}
impl From<String> for J<'_> {
    fn from(v: String) -> Self {
        J::Own(v)
    }
}
impl From<bool> for J<'_> {
    fn from(v: bool) -> Self {
        J::Bool(v)
    }
}
impl From<i64> for J<'_> {
    fn from(v: i64) -> Self {
        J::Int(v)
    }
}
impl From<u64> for J<'_> {
    fn from(v: u64) -> Self {
        J::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<i32> for J<'_> {
    fn from(v: i32) -> Self {
        J::Int(i64::from(v))
    }
}
impl From<u32> for J<'_> {
    fn from(v: u32) -> Self {
        J::Int(i64::from(v))
    }
}
impl<'a> From<Vec<J<'a>>> for J<'a> {
    fn from(v: Vec<J<'a>>) -> Self {
        J::Arr(v)
    }
}

/// `obj! { "key": value, ... }` builds an ordered [`J::Obj`].
macro_rules! obj {
    ($($k:literal : $v:expr),* $(,)?) => {
        $crate::json::J::Obj(vec![$(($k, $crate::json::J::from($v))),*])
    };
}

/// `arr![a, b]` builds a [`J::Arr`].
macro_rules! arr {
    ($($v:expr),* $(,)?) => {
        $crate::json::J::Arr(vec![$($crate::json::J::from($v)),*])
    };
}

/// `{"items":[...]}`, the EC2 query-API list wrapper.
pub(crate) fn items<'a>(v: Vec<J<'a>>) -> J<'a> {
    J::Obj(vec![("items", J::Arr(v))])
}

pub(crate) use {arr, obj};
