//! Helpers shared by the integration tests: reading the TRL golden fixture.

#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

/// The parsed `tests/fixtures/trl_grpo.json` (see `scripts/fixtures/gen_grpo_fixtures.py`).
pub fn fixture() -> Value {
    fixture_file("trl_grpo.json")
}

/// The parsed `tests/fixtures/<name>`.
pub fn fixture_file(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

/// A number, with JSON `null` read as NaN.
pub fn num(v: &Value) -> f64 {
    if v.is_null() {
        f64::NAN
    } else {
        v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
    }
}

/// A list of numbers.
pub fn vec1(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(num)
        .collect()
}

/// A list of lists of numbers.
pub fn vec2(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(vec1)
        .collect()
}

/// Whether `got` matches `want` to a relative 1e-5 (absolute 1e-6 near zero);
/// NaN matches only NaN.
pub fn close(got: f64, want: f64) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    (got - want).abs() <= 1e-5 * want.abs().max(0.1)
}
