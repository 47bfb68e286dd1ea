//! The tree walker: applies an [`UpdateRule`] to every trainable parameter.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mlx_tensor::{io, Array};

use super::{ParamState, UpdateRule};
use crate::module::{Module, ModuleExt, ParamMap};
use crate::schedule::Schedule;
use crate::{Error, Result};

/// Metadata key of the step count in saved optimizer state.
const STEP_KEY: &str = "step";
/// Metadata key of the rule's name in saved optimizer state.
const RULE_KEY: &str = "optimizer";

/// Parameter bytes evaluated together by [`Optimizer::eval_with`].
pub const EVAL_GROUP_BYTES: usize = 64 << 20;

/// An optimizer: an update rule, a learning-rate schedule, the step count
/// and every parameter's state, keyed by the parameter's dotted name.
#[derive(Debug, Clone)]
pub struct Optimizer<R> {
    rule: R,
    schedule: Schedule,
    step: u64,
    state: BTreeMap<String, ParamState>,
}

impl<R: UpdateRule> Optimizer<R> {
    /// A fresh optimizer (step 0, no state yet: each parameter's state is
    /// created at its first update).
    pub fn new(rule: R, learning_rate: impl Into<Schedule>) -> Self {
        Optimizer {
            rule,
            schedule: learning_rate.into(),
            step: 0,
            state: BTreeMap::new(),
        }
    }

    /// The update rule.
    pub fn rule(&self) -> &R {
        &self.rule
    }

    /// The learning-rate schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Replaces the learning-rate schedule (the step count is kept).
    pub fn set_schedule(&mut self, schedule: impl Into<Schedule>) {
        self.schedule = schedule.into();
    }

    /// Updates applied so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The learning rate the next update will use (an `f32` scalar).
    pub fn learning_rate(&self) -> Result<Array> {
        self.schedule.at(self.step)
    }

    /// Every parameter's state by name.
    pub fn state(&self) -> &BTreeMap<String, ParamState> {
        &self.state
    }

    /// Applies one update to `params` with `grads` and returns the new values
    /// of the parameters that have a gradient. Every gradient must name a
    /// parameter of the same shape.
    pub fn apply_gradients(&mut self, grads: &ParamMap, params: &ParamMap) -> Result<ParamMap> {
        for (name, g) in grads {
            let p = params
                .get(name)
                .ok_or_else(|| Error::UnknownParameter { name: name.clone() })?;
            if p.shape() != g.shape() {
                return Err(Error::ShapeMismatch {
                    name: name.clone(),
                    expected: p.shape().0,
                    actual: g.shape().0,
                });
            }
        }
        let lr = self.schedule.at(self.step)?;
        let step = self.step + 1;
        let mut out = ParamMap::new();
        let mut new_state = BTreeMap::new();
        for (name, g) in grads {
            let p = &params[name];
            let mut st = match self.state.get(name) {
                Some(st) => st.clone(),
                None => self.rule.init_state(g)?,
            };
            let updated = self.rule.update(p, g, &mut st, &lr, step)?;
            new_state.insert(name.clone(), st);
            out.insert(name.clone(), updated);
        }
        // Commit only once every parameter succeeded.
        self.state.extend(new_state);
        self.step = step;
        Ok(out)
    }

    /// Applies one update to the trainable parameters of `model` that have a
    /// gradient in `grads` (as returned by [`value_and_grad`](crate::value_and_grad)).
    /// Gradients of frozen parameters are ignored; a gradient naming no
    /// parameter is an error.
    pub fn update<M: Module + ?Sized>(&mut self, model: &mut M, grads: &ParamMap) -> Result<()> {
        let mut trainable = ParamMap::new();
        let mut frozen = Vec::new();
        model.for_each_param(|name, p| {
            if p.frozen {
                frozen.push(name.to_string());
            } else {
                trainable.insert(name.to_string(), p.value.clone());
            }
        });
        let mut used = ParamMap::new();
        for (name, g) in grads {
            if trainable.contains_key(name) {
                used.insert(name.clone(), g.clone());
            } else if !frozen.contains(name) {
                return Err(Error::UnknownParameter { name: name.clone() });
            }
        }
        let updated = self.apply_gradients(&used, &trainable)?;
        model.for_each_param_mut(|name, p| {
            if let Some(v) = updated.get(name) {
                p.value = v.clone();
            }
        });
        Ok(())
    }

    /// Every state array (to evaluate together with the parameters).
    pub fn state_arrays(&self) -> Vec<&Array> {
        self.state
            .values()
            .flat_map(|s| s.iter().map(|(_, a)| a))
            .collect()
    }

    /// Evaluates `model`'s parameters, the optimizer state and `extra`
    /// (e.g. the loss): the end of a training step.
    ///
    /// The parameters are evaluated in groups of about
    /// [`EVAL_GROUP_BYTES`] together with their state, so the temporaries
    /// of an update (several arrays the size of each parameter) exist for
    /// one group at a time instead of for the whole model.
    pub fn eval_with<M: Module + ?Sized>(&self, model: &M, extra: &[&Array]) -> Result<()> {
        let params = model.parameters();
        let mut group: Vec<&Array> = Vec::new();
        let mut bytes = 0usize;
        for (name, value) in &params {
            group.push(value);
            if let Some(st) = self.state.get(name) {
                group.extend(st.iter().map(|(_, a)| a));
            }
            bytes += value.nbytes();
            if bytes >= EVAL_GROUP_BYTES {
                mlx_tensor::eval(&group)?;
                group.clear();
                bytes = 0;
            }
        }
        // State of parameters the model no longer has, and the extras.
        group.extend(
            self.state
                .iter()
                .filter(|(name, _)| !params.contains_key(*name))
                .flat_map(|(_, s)| s.iter().map(|(_, a)| a)),
        );
        group.extend_from_slice(extra);
        mlx_tensor::eval(&group)?;
        Ok(())
    }

    /// The state as flat tensors named `<param>.<slot>` plus metadata
    /// (`step`, `optimizer`).
    pub fn state_dict(&self) -> (ParamMap, HashMap<String, String>) {
        let mut tensors = ParamMap::new();
        for (name, st) in &self.state {
            for (slot, a) in st.iter() {
                tensors.insert(format!("{name}.{slot}"), a.clone());
            }
        }
        let mut meta = HashMap::new();
        meta.insert(STEP_KEY.to_string(), self.step.to_string());
        meta.insert(RULE_KEY.to_string(), self.rule.name().to_string());
        (tensors, meta)
    }

    /// Restores state written by [`Optimizer::state_dict`]: every tensor
    /// `<param>.<slot>` (the slot is the part after the last dot).
    pub fn load_state_dict(
        &mut self,
        tensors: &HashMap<String, Array>,
        metadata: &HashMap<String, String>,
    ) -> Result<()> {
        let rule = metadata.get(RULE_KEY).ok_or_else(|| {
            Error::OptimizerState(format!("no `{RULE_KEY}` entry in the metadata"))
        })?;
        if rule != self.rule.name() {
            return Err(Error::OptimizerState(format!(
                "the state was saved by `{rule}`, this optimizer is `{}`",
                self.rule.name()
            )));
        }
        let step: u64 = metadata
            .get(STEP_KEY)
            .ok_or_else(|| Error::OptimizerState(format!("no `{STEP_KEY}` entry in the metadata")))?
            .parse()
            .map_err(|e| Error::OptimizerState(format!("bad step count: {e}")))?;
        let mut state: BTreeMap<String, ParamState> = BTreeMap::new();
        for (key, a) in tensors {
            let (param, slot) = key.rsplit_once('.').ok_or_else(|| {
                Error::OptimizerState(format!("tensor `{key}` is not named `<param>.<slot>`"))
            })?;
            state
                .entry(param.to_string())
                .or_default()
                .set(slot, a.clone());
        }
        self.state = state;
        self.step = step;
        Ok(())
    }

    /// Saves the state to a safetensors file (atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let (tensors, meta) = self.state_dict();
        io::save_safetensors(path, tensors.iter().map(|(k, v)| (k.as_str(), v)), &meta)?;
        Ok(())
    }

    /// Loads state saved by [`Optimizer::save`], replacing the current one.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = io::load_safetensors(path)?;
        self.load_state_dict(&file.tensors, &file.metadata)
            .map_err(|e| match e {
                Error::OptimizerState(m) => {
                    Error::OptimizerState(format!("{}: {m}", path.display()))
                }
                other => other,
            })
    }
}
