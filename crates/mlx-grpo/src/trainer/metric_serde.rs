//! Metric values in JSON files that read back exactly, NaN and infinities
//! included.
//!
//! JSON has no NaN or infinity, and `serde_json` writes them as `null`,
//! which loses the value (and used to make a logged NaN unreadable). Here a
//! finite value is a JSON number (read back bit for bit), and the others are
//! the strings `"NaN"`, `"Infinity"` and `"-Infinity"` (the spellings of
//! JavaScript and of Python's `json`). `null`, as older files hold, reads as
//! NaN.
//!
//! Use with `#[serde(with = "metric_serde::map")]` on a
//! `BTreeMap<String, f64>` or `#[serde(with = "metric_serde::maps")]` on a
//! `Vec<BTreeMap<String, f64>>`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The string written for NaN.
pub const NAN: &str = "NaN";
/// The string written for positive infinity.
pub const INFINITY: &str = "Infinity";
/// The string written for negative infinity.
pub const NEG_INFINITY: &str = "-Infinity";

/// One metric value with the representation above.
#[derive(Debug, Clone, Copy)]
pub struct MetricValue(pub f64);

impl Serialize for MetricValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            s.serialize_str(NAN)
        } else if v == f64::INFINITY {
            s.serialize_str(INFINITY)
        } else if v == f64::NEG_INFINITY {
            s.serialize_str(NEG_INFINITY)
        } else {
            s.serialize_f64(v)
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = MetricValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a number, null, \"{NAN}\", \"{INFINITY}\" or \"{NEG_INFINITY}\""
        )
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<MetricValue, E> {
        Ok(MetricValue(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<MetricValue, E> {
        Ok(MetricValue(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<MetricValue, E> {
        Ok(MetricValue(v as f64))
    }

    fn visit_unit<E: de::Error>(self) -> Result<MetricValue, E> {
        Ok(MetricValue(f64::NAN))
    }

    fn visit_none<E: de::Error>(self) -> Result<MetricValue, E> {
        Ok(MetricValue(f64::NAN))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<MetricValue, E> {
        match v {
            NAN => Ok(MetricValue(f64::NAN)),
            INFINITY => Ok(MetricValue(f64::INFINITY)),
            NEG_INFINITY => Ok(MetricValue(f64::NEG_INFINITY)),
            other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
        }
    }
}

impl<'de> Deserialize<'de> for MetricValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// `#[serde(with)]` functions for a `BTreeMap<String, f64>`.
pub mod map {
    use super::*;

    /// Writes the map with [`MetricValue`]s.
    pub fn serialize<S: Serializer>(m: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(m.iter().map(|(k, v)| (k, MetricValue(*v))))
    }

    /// Reads a map of [`MetricValue`]s.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        let raw = BTreeMap::<String, MetricValue>::deserialize(d)?;
        Ok(raw.into_iter().map(|(k, v)| (k, v.0)).collect())
    }
}

/// `#[serde(with)]` functions for a `Vec<BTreeMap<String, f64>>`.
pub mod maps {
    use super::*;

    /// Writes each map with [`MetricValue`]s.
    pub fn serialize<S: Serializer>(
        list: &[BTreeMap<String, f64>],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(list.iter().map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), MetricValue(*v)))
                .collect::<BTreeMap<String, MetricValue>>()
        }))
    }

    /// Reads a list of maps of [`MetricValue`]s.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<BTreeMap<String, f64>>, D::Error> {
        let raw = Vec::<BTreeMap<String, MetricValue>>::deserialize(d)?;
        Ok(raw
            .into_iter()
            .map(|m| m.into_iter().map(|(k, v)| (k, v.0)).collect())
            .collect())
    }
}

/// `#[serde(with)]` functions for one `f64`.
pub mod value {
    use super::*;

    /// Writes a [`MetricValue`].
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        MetricValue(*v).serialize(s)
    }

    /// Reads a [`MetricValue`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(MetricValue::deserialize(d)?.0)
    }
}
