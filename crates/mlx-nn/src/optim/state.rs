//! Per-parameter optimizer state.

use std::collections::BTreeMap;

use mlx_tensor::Array;

use crate::{Error, Result};

/// The slots of one parameter's optimizer state by name (`m`, `v`, …).
#[derive(Debug, Clone, Default)]
pub struct ParamState {
    slots: BTreeMap<String, Array>,
}

impl ParamState {
    /// An empty state.
    pub fn new() -> Self {
        ParamState::default()
    }

    /// A state whose slots are zeros shaped like `like`.
    pub fn zeros(names: &[&str], like: &Array) -> Result<Self> {
        let mut state = ParamState::new();
        for name in names {
            state.set(name, like.zeros_like()?);
        }
        Ok(state)
    }

    /// The slot `name`; an error naming it when it is absent.
    pub fn get(&self, name: &str) -> Result<&Array> {
        self.slots.get(name).ok_or_else(|| {
            Error::OptimizerState(format!("missing slot `{name}` (have {:?})", self.names()))
        })
    }

    /// Sets slot `name`.
    pub fn set(&mut self, name: &str, value: Array) {
        self.slots.insert(name.to_string(), value);
    }

    /// The slot names.
    pub fn names(&self) -> Vec<&str> {
        self.slots.keys().map(String::as_str).collect()
    }

    /// The slots by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Array)> {
        self.slots.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}
