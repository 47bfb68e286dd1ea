//! Checks of saved optimizer state before it replaces the live one.
//!
//! A state file is trusted no further than the optimizer and the parameters
//! it is loaded for: its step count must be a plausible whole number, every
//! tensor must be named `<param>.<slot>` with a slot the update rule has,
//! each parameter must have all of its slots, and, when the parameters are
//! known, each slot must have the dtype and shape the rule gives that
//! parameter's state, with no state for unknown parameters and none missing.

use std::collections::{BTreeMap, HashMap};

use mlx_tensor::{Array, Dtype};

use super::{ParamState, UpdateRule};
use crate::module::ParamMap;
use crate::{Error, Result};

/// The largest step count accepted (about 1.1e12, far beyond any run; a
/// larger count is a damaged or foreign file).
pub const MAX_STEP: u64 = 1 << 40;

/// An error about `tensor` (a `<param>.<slot>` name or a metadata key).
fn invalid(tensor: Option<&str>, message: String) -> Error {
    Error::InvalidOptimizerState {
        path: None,
        tensor: tensor.map(str::to_string),
        message,
    }
}

/// The step count stored under `key`: a whole number from 0 to [`MAX_STEP`].
pub(super) fn parse_step(metadata: &HashMap<String, String>, key: &str) -> Result<u64> {
    let text = metadata
        .get(key)
        .ok_or_else(|| invalid(Some(key), "no such metadata entry".into()))?;
    let out_of_range = || {
        invalid(
            Some(key),
            format!("{text:?} is not a step count (a whole number from 0 to {MAX_STEP})"),
        )
    };
    let step: u64 = text.parse().map_err(|_| out_of_range())?;
    if step > MAX_STEP {
        return Err(out_of_range());
    }
    Ok(step)
}

/// The slot names `rule` keeps for every parameter.
fn slot_names<R: UpdateRule>(rule: &R) -> Result<Vec<String>> {
    let probe = Array::zeros(&[1], Dtype::F32)?;
    Ok(rule
        .init_state(&probe)?
        .names()
        .into_iter()
        .map(str::to_string)
        .collect())
}

/// The tensors grouped by parameter, each `<param>.<slot>` name checked to
/// end in one of `rule`'s slots, each parameter to have all of them, of one
/// shape and a floating-point dtype.
pub(super) fn group_by_param<R: UpdateRule>(
    rule: &R,
    tensors: &HashMap<String, Array>,
) -> Result<BTreeMap<String, ParamState>> {
    let slots = slot_names(rule)?;
    let mut state: BTreeMap<String, ParamState> = BTreeMap::new();
    let mut keys: Vec<&String> = tensors.keys().collect();
    keys.sort();
    for key in keys {
        let a = &tensors[key];
        let (param, slot) = key
            .rsplit_once('.')
            .ok_or_else(|| invalid(Some(key), "the name is not `<param>.<slot>`".into()))?;
        if param.is_empty() || !slots.iter().any(|s| s == slot) {
            return Err(invalid(
                Some(key),
                format!(
                    "unknown tensor: `{}` keeps the slots {slots:?} per parameter",
                    rule.name()
                ),
            ));
        }
        if !a.dtype().is_float() {
            return Err(invalid(
                Some(key),
                format!("dtype {} is not a floating-point dtype", a.dtype()),
            ));
        }
        state
            .entry(param.to_string())
            .or_default()
            .set(slot, a.clone());
    }
    for (param, st) in &state {
        let mut shapes = st.iter().map(|(slot, a)| (slot, a.shape().0));
        let first = shapes.next();
        for slot in &slots {
            if st.get(slot).is_err() {
                return Err(invalid(
                    Some(&format!("{param}.{slot}")),
                    format!("missing: the parameter has the slots {:?}", st.names()),
                ));
            }
        }
        if let Some((first_slot, first_shape)) = first {
            for (slot, shape) in shapes {
                if shape != first_shape {
                    return Err(invalid(
                        Some(&format!("{param}.{slot}")),
                        format!(
                            "shape {shape:?} differs from `{param}.{first_slot}` {first_shape:?}"
                        ),
                    ));
                }
            }
        }
    }
    Ok(state)
}

/// Checks `state` against the parameters it will update: no state for an
/// unknown parameter; every slot of the dtype and shape `rule` gives the
/// parameter's own state; and, after the first step (`step > 0`), no
/// parameter without state.
pub(super) fn check_against_params<R: UpdateRule>(
    rule: &R,
    state: &BTreeMap<String, ParamState>,
    params: &ParamMap,
    step: u64,
) -> Result<()> {
    for (param, st) in state {
        let Some(value) = params.get(param) else {
            let slot = st
                .names()
                .first()
                .map_or(String::new(), |s| format!(".{s}"));
            return Err(invalid(
                Some(&format!("{param}{slot}")),
                format!("unknown tensor: the model has no trainable parameter `{param}`"),
            ));
        };
        let expected = rule.init_state(value)?;
        for (slot, want) in expected.iter() {
            let name = format!("{param}.{slot}");
            let got = st
                .get(slot)
                .map_err(|_| invalid(Some(&name), "missing".into()))?;
            if got.dtype() != want.dtype() {
                return Err(invalid(
                    Some(&name),
                    format!(
                        "dtype {} does not match the parameter's state dtype {}",
                        got.dtype(),
                        want.dtype()
                    ),
                ));
            }
            if got.shape() != want.shape() {
                return Err(invalid(
                    Some(&name),
                    format!(
                        "shape {:?} does not match the parameter's shape {:?}",
                        got.shape().0,
                        want.shape().0
                    ),
                ));
            }
        }
    }
    if step > 0
        && let Some(param) = params.keys().find(|p| !state.contains_key(*p))
    {
        let slot = slot_names(rule)?.into_iter().next().unwrap_or_default();
        return Err(invalid(
            Some(&format!("{param}.{slot}")),
            format!("missing: the state is at step {step} but has nothing for `{param}`"),
        ));
    }
    Ok(())
}
