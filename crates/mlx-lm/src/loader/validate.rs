//! Checking a checkpoint's headers against the tensors a configuration needs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::files::HeaderMap;
use super::problem::CheckpointProblem;
use crate::models::experts::PROJECTIONS;

/// Element types that can hold weights.
const FLOAT_DTYPES: [&str; 4] = ["F32", "F16", "BF16", "F64"];

/// A tensor as the model will see it after experts are stacked.
struct Virtual {
    file: PathBuf,
    /// The key in the file (first expert's key for stacked groups).
    source_key: String,
    /// Shape after stacking.
    shape: Vec<i64>,
    /// Leading axes added by stacking (1 for per-expert groups).
    stacked: bool,
}

/// Whether a checkpoint key is dropped silently at load.
pub(crate) fn ignorable(key: &str, tied: bool) -> bool {
    (tied && key == "lm_head.weight") || key.ends_with(".rotary_emb.inv_freq")
}

/// Compares the headers with `expected` (stacked parameter names and
/// shapes) and returns every problem.
pub(crate) fn validate(
    headers: &HeaderMap,
    expected: &BTreeMap<String, Vec<i64>>,
    num_experts: i32,
    tied: bool,
    weight_map: Option<&BTreeMap<String, String>>,
) -> Vec<CheckpointProblem> {
    let mut problems = Vec::new();
    for (key, (file, info)) in &headers.tensors {
        if !FLOAT_DTYPES.contains(&info.dtype.as_str()) {
            problems.push(CheckpointProblem::WrongDtype {
                file: file.clone(),
                key: key.clone(),
                found: info.dtype.clone(),
            });
        }
    }
    let virtuals = stacked_view(headers, num_experts, &mut problems);
    for (name, shape) in expected {
        match virtuals.get(name) {
            None => {
                let key = checkpoint_key(name, num_experts);
                if !headers.in_bad_file(&first_key(name), weight_map) {
                    problems.push(CheckpointProblem::MissingTensor {
                        key,
                        expected: shape.clone(),
                    });
                }
            }
            Some(v) if &v.shape != shape => {
                let (expected, found) = if v.stacked {
                    (shape[1..].to_vec(), v.shape[1..].to_vec())
                } else {
                    (shape.clone(), v.shape.clone())
                };
                problems.push(CheckpointProblem::WrongShape {
                    file: v.file.clone(),
                    key: v.source_key.clone(),
                    expected,
                    found,
                });
            }
            Some(_) => {}
        }
    }
    for (name, v) in &virtuals {
        if !expected.contains_key(name) && !ignorable(name, tied) {
            problems.push(CheckpointProblem::UnexpectedTensor {
                file: v.file.clone(),
                key: v.source_key.clone(),
            });
        }
    }
    problems
}

/// How a missing stacked parameter is named to the user.
fn checkpoint_key(name: &str, num_experts: i32) -> String {
    match split_switch(name) {
        Some((prefix, proj)) => {
            format!("{prefix}.experts.{{0..{}}}.{proj}.weight", num_experts - 1)
        }
        None => name.to_string(),
    }
}

/// The per-expert key of expert 0 for a stacked name (for index lookups).
fn first_key(name: &str) -> String {
    match split_switch(name) {
        Some((prefix, proj)) => format!("{prefix}.experts.0.{proj}.weight"),
        None => name.to_string(),
    }
}

fn split_switch(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_suffix(".weight")?;
    let (prefix, proj) = rest.rsplit_once(".switch_mlp.")?;
    PROJECTIONS.contains(&proj).then_some((prefix, proj))
}

/// The headers with per-expert tensors grouped into stacked ones (and
/// fused gate/up tensors split), reporting gaps and odd shapes.
fn stacked_view(
    headers: &HeaderMap,
    num_experts: i32,
    problems: &mut Vec<CheckpointProblem>,
) -> BTreeMap<String, Virtual> {
    let mut out = BTreeMap::new();
    let mut groups: BTreeMap<(String, String), BTreeMap<i64, String>> = BTreeMap::new();
    for (key, (file, info)) in &headers.tensors {
        if let Some((prefix, e, proj)) = split_expert(key) {
            groups
                .entry((prefix.to_string(), proj.to_string()))
                .or_default()
                .insert(e, key.clone());
            continue;
        }
        if let Some(prefix) = key.strip_suffix(".mlp.experts.gate_up_proj") {
            let mut half = info.shape.clone();
            if half.len() == 3 {
                half[1] /= 2;
            }
            for proj in ["gate_proj", "up_proj"] {
                out.insert(
                    format!("{prefix}.mlp.switch_mlp.{proj}.weight"),
                    Virtual {
                        file: file.clone(),
                        source_key: key.clone(),
                        shape: half.clone(),
                        stacked: false,
                    },
                );
            }
            continue;
        }
        if let Some(prefix) = key.strip_suffix(".mlp.experts.down_proj") {
            out.insert(
                format!("{prefix}.mlp.switch_mlp.down_proj.weight"),
                Virtual {
                    file: file.clone(),
                    source_key: key.clone(),
                    shape: info.shape.clone(),
                    stacked: false,
                },
            );
            continue;
        }
        out.insert(
            key.clone(),
            Virtual {
                file: file.clone(),
                source_key: key.clone(),
                shape: info.shape.clone(),
                stacked: false,
            },
        );
    }
    for ((prefix, proj), members) in groups {
        let Some((first_file, first_info)) =
            members.values().next().and_then(|k| headers.tensors.get(k))
        else {
            continue;
        };
        let shape = first_info.shape.clone();
        let present: BTreeSet<i64> = members.keys().copied().collect();
        for e in 0..i64::from(num_experts) {
            if !present.contains(&e) {
                problems.push(CheckpointProblem::MissingTensor {
                    key: format!("{prefix}.experts.{e}.{proj}.weight"),
                    expected: shape.clone(),
                });
            }
        }
        for (e, key) in &members {
            let Some((file, info)) = headers.tensors.get(key) else {
                continue;
            };
            if *e >= i64::from(num_experts) {
                problems.push(CheckpointProblem::UnexpectedTensor {
                    file: file.clone(),
                    key: key.clone(),
                });
            } else if info.shape != shape {
                problems.push(CheckpointProblem::WrongShape {
                    file: file.clone(),
                    key: key.clone(),
                    expected: shape.clone(),
                    found: info.shape.clone(),
                });
            }
        }
        let mut stacked = vec![i64::from(num_experts)];
        stacked.extend(&shape);
        let source_key = members.values().next().cloned().unwrap_or_default();
        out.insert(
            format!("{prefix}.switch_mlp.{proj}.weight"),
            Virtual {
                file: first_file.clone(),
                source_key,
                shape: stacked,
                stacked: true,
            },
        );
    }
    out
}

fn split_expert(name: &str) -> Option<(&str, i64, &str)> {
    let rest = name.strip_suffix(".weight")?;
    let (prefix, tail) = rest.rsplit_once(".experts.")?;
    let (e, proj) = tail.split_once('.')?;
    let e = e.parse::<i64>().ok()?;
    PROJECTIONS.contains(&proj).then_some((prefix, e, proj))
}
