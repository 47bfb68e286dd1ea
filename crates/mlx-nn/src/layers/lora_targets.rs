//! Which layers of a model get adapters: PEFT's `target_modules` and
//! `layers_to_transform` rules (and mlx-lm's "last `num_layers` blocks").
//!
//! Matching works on module paths (`model.layers.3.self_attn.q_proj`), the
//! dotted parameter names without their last part, so it applies to any
//! [`Module`](crate::Module) tree.

use regex::Regex;

use crate::{Error, Result};

/// PEFT's `target_modules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetModules {
    /// A list of names: a module matches when its path equals a name or
    /// ends with `.` + the name (`q_proj`, `self_attn.q_proj`).
    Names(Vec<String>),
    /// One string, a regular expression the whole path must match (the
    /// [`LayerSelection`] does not apply, as in PEFT).
    Regex(String),
    /// `"all-linear"`: every linear layer except the output layer.
    AllLinear,
}

/// Which decoder blocks get adapters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LayerSelection {
    /// Every block, and modules outside the blocks too.
    #[default]
    All,
    /// PEFT's `layers_to_transform`: these block indices only.
    Indices(Vec<usize>),
    /// mlx-lm's `num_layers`: the last `n` blocks only.
    Last(usize),
}

/// A module that could carry an adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCandidate {
    /// Its dotted path.
    pub path: String,
    /// Whether it is a linear layer (dense or quantized); only those can
    /// take an adapter.
    pub linear: bool,
    /// Whether it is the model's output layer (the LM head), which
    /// `"all-linear"` leaves out.
    pub output: bool,
}

impl TargetCandidate {
    /// A linear layer that is not the output layer.
    pub fn linear(path: impl Into<String>) -> Self {
        TargetCandidate {
            path: path.into(),
            linear: true,
            output: false,
        }
    }
}

/// The block index of a path: the number right after a `layers` (or `h`,
/// `blocks`, `layer`) segment, PEFT's default `layers_pattern`.
pub fn layer_index(path: &str) -> Option<usize> {
    let mut parts = path.split('.');
    while let Some(part) = parts.next() {
        if matches!(part, "layers" | "h" | "blocks" | "layer")
            && let Some(n) = parts.clone().next().and_then(|p| p.parse().ok())
        {
            return Some(n);
        }
    }
    None
}

fn name_matches(path: &str, name: &str) -> bool {
    path == name
        || path
            .strip_suffix(name)
            .is_some_and(|head| head.ends_with('.'))
}

/// The paths of `candidates` that get adapters, in the candidates' order.
///
/// Errors: a listed name that matches no module, a name or pattern that
/// matches only modules that are not linear, a pattern that is not a valid
/// regular expression, or a selection that matches nothing at all.
/// `num_layers` is the model's block count (for [`LayerSelection::Last`]).
pub fn select_targets(
    candidates: &[TargetCandidate],
    modules: &TargetModules,
    layers: &LayerSelection,
    num_layers: usize,
) -> Result<Vec<String>> {
    let in_layers = |path: &str| match layers {
        LayerSelection::All => true,
        LayerSelection::Indices(ix) => layer_index(path).is_some_and(|i| ix.contains(&i)),
        LayerSelection::Last(n) => {
            let first = num_layers.saturating_sub(*n);
            layer_index(path).is_some_and(|i| i >= first)
        }
    };
    let matched: Vec<&TargetCandidate> = match modules {
        TargetModules::AllLinear => candidates
            .iter()
            .filter(|c| c.linear && !c.output)
            .collect(),
        TargetModules::Names(names) => {
            for name in names {
                let hits: Vec<&TargetCandidate> = candidates
                    .iter()
                    .filter(|c| name_matches(&c.path, name))
                    .collect();
                if hits.is_empty() {
                    return Err(Error::Config(format!(
                        "target module `{name}` matches no module of the model"
                    )));
                }
                if let Some(bad) = hits.iter().find(|c| !c.linear) {
                    return Err(Error::Config(format!(
                        "target module `{name}` matches `{}`, which is not a linear layer",
                        bad.path
                    )));
                }
            }
            candidates
                .iter()
                .filter(|c| names.iter().any(|n| name_matches(&c.path, n)))
                .collect()
        }
        TargetModules::Regex(pattern) => {
            let re = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                Error::Config(format!(
                    "target_modules `{pattern}` is not a regular expression: {e}"
                ))
            })?;
            let hits: Vec<&TargetCandidate> =
                candidates.iter().filter(|c| re.is_match(&c.path)).collect();
            if let Some(bad) = hits.iter().find(|c| !c.linear) {
                return Err(Error::Config(format!(
                    "target_modules `{pattern}` matches `{}`, which is not a linear layer",
                    bad.path
                )));
            }
            hits
        }
    };
    // As in PEFT, a pattern names its modules completely: the layer
    // selection applies to names and "all-linear" only.
    let pattern = matches!(modules, TargetModules::Regex(_));
    let selected: Vec<String> = matched
        .into_iter()
        .filter(|c| pattern || in_layers(&c.path))
        .map(|c| c.path.clone())
        .collect();
    if selected.is_empty() {
        return Err(Error::Config(format!(
            "the adapter targets ({modules:?}, layers {layers:?}) select no module"
        )));
    }
    Ok(selected)
}
