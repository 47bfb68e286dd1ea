//! Conversions between stacked expert weights (`switch_mlp.*`, `[E, out, in]`)
//! and the per-expert tensors of Hugging Face checkpoints.

use std::collections::{BTreeMap, HashMap};

use mlx_nn::ParamMap;
use mlx_tensor::{Array, stack};

use crate::Result;

/// The three projections of an expert.
pub(crate) const PROJECTIONS: [&str; 3] = ["gate_proj", "up_proj", "down_proj"];

/// Replaces every `….mlp.switch_mlp.{p}.weight` (`[E, out, in]`) by
/// `….mlp.experts.{e}.{p}.weight` (`[out, in]`) for each expert `e`.
/// Packed (quantized) experts stay stacked with their `scales` and
/// `biases`, as mlx-lm stores them.
pub(crate) fn unstack_experts(params: ParamMap) -> Result<ParamMap> {
    let mut out = ParamMap::new();
    for (name, value) in params {
        match split_switch_name(&name) {
            Some((prefix, proj)) if value.dtype().is_float() => {
                let experts = value.axis_size(0)?;
                for e in 0..experts {
                    let one = value.slice_axis(0, e, Some(e + 1), 1)?.squeeze(&[0])?;
                    out.insert(format!("{prefix}.experts.{e}.{proj}.weight"), one);
                }
            }
            _ => {
                out.insert(name, value);
            }
        }
    }
    Ok(out)
}

/// `("model.layers.3.mlp", "gate_proj")` for `model.layers.3.mlp.switch_mlp.gate_proj.weight`.
fn split_switch_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_suffix(".weight")?;
    let (prefix, proj) = rest.rsplit_once(".switch_mlp.")?;
    PROJECTIONS.contains(&proj).then_some((prefix, proj))
}

/// What stacking found wrong: `(tensor name, problem)`.
pub(crate) type StackProblem = (String, String);

/// Stacks per-expert tensors `….mlp.experts.{e}.{p}.weight` into
/// `….mlp.switch_mlp.{p}.weight`, and splits transformers' fused
/// `….mlp.experts.gate_up_proj` / `….mlp.experts.down_proj` the same way.
/// Expert indices must run `0..num_experts` without gaps; gaps are
/// reported (and the layer's tensors left as they are, so the model build
/// reports the stacked tensor as missing too).
pub(crate) fn stack_experts(
    tensors: &mut HashMap<String, Array>,
    num_experts: i32,
) -> Result<Vec<StackProblem>> {
    let mut groups: BTreeMap<(String, String), BTreeMap<i32, String>> = BTreeMap::new();
    let mut fused: Vec<String> = Vec::new();
    for name in tensors.keys() {
        if let Some((prefix, e, proj)) = split_expert_name(name) {
            groups
                .entry((prefix.to_string(), proj.to_string()))
                .or_default()
                .insert(e, name.clone());
        } else if name.ends_with(".mlp.experts.gate_up_proj")
            || name.ends_with(".mlp.experts.down_proj")
        {
            fused.push(name.clone());
        }
    }
    let mut problems = Vec::new();
    for ((prefix, proj), members) in groups {
        let expected: Vec<i32> = (0..num_experts).collect();
        let found: Vec<i32> = members.keys().copied().collect();
        if found != expected {
            let missing: Vec<i32> = expected
                .iter()
                .copied()
                .filter(|e| !members.contains_key(e))
                .collect();
            let extra: Vec<i32> = found
                .iter()
                .copied()
                .filter(|e| *e < 0 || *e >= num_experts)
                .collect();
            let mut what = Vec::new();
            if !missing.is_empty() {
                what.push(format!("experts {missing:?} missing"));
            }
            if !extra.is_empty() {
                what.push(format!(
                    "experts {extra:?} beyond num_experts = {num_experts}"
                ));
            }
            problems.push((format!("{prefix}.experts.*.{proj}.weight"), what.join(", ")));
            continue;
        }
        let arrays: Vec<Array> = members.values().filter_map(|n| tensors.remove(n)).collect();
        let shapes: Vec<_> = arrays.iter().map(Array::shape).collect();
        if shapes.windows(2).any(|w| w[0] != w[1]) {
            problems.push((
                format!("{prefix}.experts.*.{proj}.weight"),
                "experts have different shapes".into(),
            ));
            continue;
        }
        let refs: Vec<&Array> = arrays.iter().collect();
        tensors.insert(
            format!("{prefix}.switch_mlp.{proj}.weight"),
            stack(&refs, 0)?,
        );
    }
    for name in fused {
        let Some(value) = tensors.remove(&name) else {
            continue;
        };
        let prefix = name
            .rsplit_once(".experts.")
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
        if name.ends_with("gate_up_proj") {
            let halves = value.split(2, 1)?;
            if let [gate, up] = halves.as_slice() {
                tensors.insert(
                    format!("{prefix}.switch_mlp.gate_proj.weight"),
                    gate.clone(),
                );
                tensors.insert(format!("{prefix}.switch_mlp.up_proj.weight"), up.clone());
            }
        } else {
            tensors.insert(format!("{prefix}.switch_mlp.down_proj.weight"), value);
        }
    }
    Ok(problems)
}

/// `("model.layers.3.mlp", 7, "up_proj")` for `model.layers.3.mlp.experts.7.up_proj.weight`.
fn split_expert_name(name: &str) -> Option<(&str, i32, &str)> {
    let rest = name.strip_suffix(".weight")?;
    let (prefix, tail) = rest.rsplit_once(".experts.")?;
    let (e, proj) = tail.split_once('.')?;
    let e = e.parse::<i32>().ok()?;
    PROJECTIONS.contains(&proj).then_some((prefix, e, proj))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(
            split_switch_name("model.layers.3.mlp.switch_mlp.gate_proj.weight"),
            Some(("model.layers.3.mlp", "gate_proj"))
        );
        assert_eq!(
            split_expert_name("model.layers.3.mlp.experts.7.up_proj.weight"),
            Some(("model.layers.3.mlp", 7, "up_proj"))
        );
        assert_eq!(split_expert_name("model.layers.3.mlp.gate.weight"), None);
    }
}
