//! The tree walker: applies an [`UpdateRule`] to every trainable parameter.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mlx_tensor::{Array, io};

use super::state_check::{check_against_params, group_by_param, parse_step};
use super::state_store::{StateStore, byte_groups};
use super::{HostUpdateTimings, ParamState, UpdateRule};
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
///
/// The state lives in MLX arrays by default. With
/// [`Optimizer::set_state_on_host`] it lives in host memory between updates
/// instead (as DeepSpeed's optimizer offload keeps it): each update brings
/// one group of about [`Optimizer::group_bytes`] of parameters' state to the
/// device, updates those parameters, evaluates, and copies the new state
/// back, so the device holds the weights and gradients but never the whole
/// state. The updates are bit for bit the same in both placements.
#[derive(Debug, Clone)]
pub struct Optimizer<R> {
    rule: R,
    schedule: Schedule,
    step: u64,
    /// Every parameter's state, on the device or on the host.
    state: StateStore,
    group_bytes: usize,
}

impl<R: UpdateRule> Optimizer<R> {
    /// A fresh optimizer (step 0, no state yet: each parameter's state is
    /// created at its first update).
    pub fn new(rule: R, learning_rate: impl Into<Schedule>) -> Self {
        Optimizer {
            rule,
            schedule: learning_rate.into(),
            step: 0,
            state: StateStore::default(),
            group_bytes: EVAL_GROUP_BYTES,
        }
    }

    /// Where the last [`Optimizer::update`] with the state on the host spent
    /// its time (`None` before the first one, and after an `update` with
    /// the state on the device).
    pub fn last_host_update_timings(&self) -> Option<HostUpdateTimings> {
        self.state.timings()
    }

    /// Parameter bytes evaluated (and, with the state on the host, moved)
    /// together; [`EVAL_GROUP_BYTES`] unless set.
    pub fn group_bytes(&self) -> usize {
        self.group_bytes
    }

    /// Sets how many parameter bytes are evaluated together at the end of a
    /// step: smaller groups hold fewer update temporaries (and less moved
    /// state) at a time, larger ones launch fewer evaluations. At least one
    /// parameter goes in each group whatever its size.
    pub fn set_group_bytes(&mut self, bytes: usize) {
        self.group_bytes = bytes;
    }

    /// Whether the state is kept in host memory between updates.
    pub fn state_on_host(&self) -> bool {
        self.state.on_host()
    }

    /// Keeps the state in host memory between updates (`true`) or in MLX
    /// arrays (`false`), moving the existing state over. With the state on
    /// the host, [`Optimizer::update`] evaluates the new parameters group by
    /// group as it goes (there is nothing left for
    /// [`Optimizer::eval_with`] but the extras), and
    /// [`Optimizer::state`] is empty: [`Optimizer::host_state_bytes`] and
    /// [`Optimizer::state_dict`] still see it.
    pub fn set_state_on_host(&mut self, on_host: bool) -> Result<()> {
        self.state.set_on_host(on_host)
    }

    /// Bytes of state held in host memory (0 unless the state is on the
    /// host).
    pub fn host_state_bytes(&self) -> usize {
        self.state.host_bytes()
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
        self.state.device()
    }

    /// Applies one update to `params` with `grads` and returns the new values
    /// of the parameters that have a gradient. Every gradient must name a
    /// parameter of the same shape.
    ///
    /// With the state on the host (see [`Optimizer::set_state_on_host`]),
    /// every parameter's state is brought to the device for this call: use
    /// [`Optimizer::update`], which moves one group at a time.
    pub fn apply_gradients(&mut self, grads: &ParamMap, params: &ParamMap) -> Result<ParamMap> {
        check_gradients(grads, params)?;
        let lr = self.schedule.at(self.step)?;
        let step = self.step + 1;
        let rule = &self.rule;
        let updated = self.state.update_all(grads, |name, grad, state| {
            update_param(rule, &params[name], grad, state, &lr, step)
        })?;
        self.step = step;
        Ok(updated)
    }

    /// Applies one update to the trainable parameters of `model` that have a
    /// gradient in `grads` (as returned by [`value_and_grad`](crate::value_and_grad)).
    /// Gradients of frozen parameters are ignored; a gradient naming no
    /// parameter is an error.
    ///
    /// With the state on the host, each group of about
    /// [`Optimizer::group_bytes`] of parameters is updated and evaluated in
    /// turn, its state brought to the device and copied back, so at most two
    /// groups' state are on the device. An error part way (MLX failing to
    /// evaluate) leaves the groups before it updated, each parameter
    /// together with its state, and the step count unchanged.
    pub fn update<M: Module + ?Sized>(&mut self, model: &mut M, grads: &ParamMap) -> Result<()> {
        let (mut trainable, used) = trainable_with_gradients(model, grads)?;
        check_gradients(&used, &trainable)?;
        let lr = self.schedule.at(self.step)?;
        let step = self.step + 1;
        let rule = &self.rule;
        self.state.update(
            &used,
            self.group_bytes,
            |name, grad, state| {
                let param = trainable
                    .remove(name)
                    .ok_or_else(|| Error::UnknownParameter { name: name.clone() })?;
                update_param(rule, &param, grad, state, &lr, step)
            },
            |mut updated| {
                model.for_each_param_mut(|name, p| {
                    if let Some(v) = updated.remove(name) {
                        p.value = v;
                    }
                });
            },
        )?;
        self.step = step;
        Ok(())
    }

    /// Every state array (to evaluate together with the parameters); none
    /// while the state is on the host.
    pub fn state_arrays(&self) -> Vec<&Array> {
        self.state
            .device()
            .values()
            .flat_map(|s| s.iter().map(|(_, a)| a))
            .collect()
    }

    /// Evaluates `model`'s parameters, the optimizer state and `extra`
    /// (e.g. the loss): the end of a training step.
    ///
    /// The parameters are evaluated in groups of about
    /// [`Optimizer::group_bytes`] together with their state, so the temporaries
    /// of an update (several arrays the size of each parameter) exist for
    /// one group at a time instead of for the whole model.
    pub fn eval_with<M: Module + ?Sized>(&self, model: &M, extra: &[&Array]) -> Result<()> {
        let params = model.parameters();
        let entries: Vec<(&String, &Array)> = params.iter().collect();
        let mut groups = byte_groups(entries.iter().map(|(_, v)| v.nbytes()), self.group_bytes);
        // The last group, if it is not full, goes with the extras below.
        let last = groups
            .last()
            .filter(|&&(start, end)| {
                entries[start..end]
                    .iter()
                    .map(|(_, v)| v.nbytes())
                    .sum::<usize>()
                    < self.group_bytes
            })
            .copied();
        if last.is_some() {
            groups.pop();
        }
        let with_state = |(start, end): (usize, usize)| -> Vec<&Array> {
            let mut group = Vec::new();
            for &(name, value) in &entries[start..end] {
                group.push(value);
                if let Some(st) = self.state.device().get(name) {
                    group.extend(st.iter().map(|(_, a)| a));
                }
            }
            group
        };
        for range in groups {
            mlx_tensor::eval(&with_state(range))?;
        }
        let mut group = last.map(with_state).unwrap_or_default();
        // State of parameters the model no longer has, and the extras.
        group.extend(
            self.state
                .device()
                .iter()
                .filter(|(name, _)| !params.contains_key(*name))
                .flat_map(|(_, s)| s.iter().map(|(_, a)| a)),
        );
        group.extend_from_slice(extra);
        mlx_tensor::eval(&group)?;
        Ok(())
    }

    /// The state as flat tensors named `<param>.<slot>` plus metadata
    /// (`step`, `optimizer`). With the state on the host the tensors are new
    /// MLX arrays copied from it (all of it on the device at once; saving
    /// with [`Optimizer::save`] writes from host memory instead).
    pub fn state_dict(&self) -> Result<(ParamMap, HashMap<String, String>)> {
        let tensors = self.state.tensors()?;
        Ok((tensors, self.metadata()))
    }

    fn metadata(&self) -> HashMap<String, String> {
        let mut meta = HashMap::new();
        meta.insert(STEP_KEY.to_string(), self.step.to_string());
        meta.insert(RULE_KEY.to_string(), self.rule.name().to_string());
        meta
    }

    /// Restores state written by [`Optimizer::state_dict`]: every tensor
    /// `<param>.<slot>` (the slot is the part after the last dot). With the
    /// state on the host each tensor is copied there one at a time.
    ///
    /// The state is checked as far as it can be without the parameters:
    /// the rule's name, a step count from 0 to [`MAX_STEP`](super::MAX_STEP),
    /// only slots the rule keeps, all of them for each parameter, of one
    /// shape and a floating-point dtype. [`Optimizer::load_state_dict_for`]
    /// also checks it against the parameters. Nothing changes on an error.
    pub fn load_state_dict(
        &mut self,
        tensors: &HashMap<String, Array>,
        metadata: &HashMap<String, String>,
    ) -> Result<()> {
        let (state, step) = self.checked_state(tensors, metadata)?;
        self.install(state, step)
    }

    /// [`Optimizer::load_state_dict`] for the trainable parameters `params`
    /// (name → value): every slot must also have the dtype and shape this
    /// rule gives its parameter's state, no tensor may belong to a parameter
    /// not in `params`, and after the first step every parameter must have
    /// its state. Nothing changes on an error.
    pub fn load_state_dict_for(
        &mut self,
        tensors: &HashMap<String, Array>,
        metadata: &HashMap<String, String>,
        params: &ParamMap,
    ) -> Result<()> {
        let (state, step) = self.checked_state(tensors, metadata)?;
        check_against_params(&self.rule, &state, params, step)?;
        self.install(state, step)
    }

    /// The rule name, the step and the tensors' names checked, the tensors
    /// grouped by parameter.
    fn checked_state(
        &self,
        tensors: &HashMap<String, Array>,
        metadata: &HashMap<String, String>,
    ) -> Result<(BTreeMap<String, ParamState>, u64)> {
        let invalid = |message: String| Error::InvalidOptimizerState {
            path: None,
            tensor: Some(RULE_KEY.to_string()),
            message,
        };
        let rule = metadata
            .get(RULE_KEY)
            .ok_or_else(|| invalid("no such metadata entry".into()))?;
        if rule != self.rule.name() {
            return Err(invalid(format!(
                "the state was saved by `{rule}`, this optimizer is `{}`",
                self.rule.name()
            )));
        }
        let step = parse_step(metadata, STEP_KEY)?;
        let state = group_by_param(&self.rule, tensors)?;
        Ok((state, step))
    }

    /// Makes `state` and `step` the live state (copied to the host when the
    /// state lives there).
    fn install(&mut self, state: BTreeMap<String, ParamState>, step: u64) -> Result<()> {
        self.state.install(state)?;
        self.step = step;
        Ok(())
    }

    /// Saves the state to a safetensors file (atomically). State kept on
    /// the host is written from host memory.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.state.save(path.as_ref(), &self.metadata())
    }

    /// Loads state saved by [`Optimizer::save`], replacing the current one,
    /// with the checks of [`Optimizer::load_state_dict`]. To resume
    /// training prefer [`Optimizer::load_for`], which also checks the state
    /// against the model's parameters.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = io::load_safetensors(path)?;
        self.load_state_dict(&file.tensors, &file.metadata)
            .map_err(|e| in_file(e, path))
    }

    /// Loads state saved by [`Optimizer::save`] for the trainable
    /// parameters of `model`, with the checks of
    /// [`Optimizer::load_state_dict_for`]: a tensor of the wrong dtype or
    /// shape, an unknown or missing tensor, or a step count out of range is
    /// an [`Error::InvalidOptimizerState`] naming the file and the tensor,
    /// and the current state is kept.
    pub fn load_for<M: Module + ?Sized>(
        &mut self,
        path: impl AsRef<Path>,
        model: &M,
    ) -> Result<()> {
        let path = path.as_ref();
        let file = io::load_safetensors(path)?;
        self.load_state_dict_for(&file.tensors, &file.metadata, &model.trainable_parameters())
            .map_err(|e| in_file(e, path))
    }
}

/// `e` with the file it came from filled in.
fn in_file(e: Error, file: &Path) -> Error {
    match e {
        Error::InvalidOptimizerState {
            path: None,
            tensor,
            message,
        } => Error::InvalidOptimizerState {
            path: Some(file.to_path_buf()),
            tensor,
            message,
        },
        Error::OptimizerState(m) => Error::OptimizerState(format!("{}: {m}", file.display())),
        other => other,
    }
}

/// The trainable parameters of `model` and the gradients of `grads` that
/// belong to them; gradients of frozen parameters are dropped, one naming no
/// parameter is an error.
fn trainable_with_gradients<M: Module + ?Sized>(
    model: &M,
    grads: &ParamMap,
) -> Result<(ParamMap, ParamMap)> {
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
    Ok((trainable, used))
}

/// Every gradient names a parameter of its shape.
fn check_gradients(grads: &ParamMap, params: &ParamMap) -> Result<()> {
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
    Ok(())
}

/// One parameter's new value and new state under `rule`; `state` is `None`
/// before the parameter's first update.
fn update_param<R: UpdateRule>(
    rule: &R,
    param: &Array,
    grad: &Array,
    state: Option<ParamState>,
    lr: &Array,
    step: u64,
) -> Result<(Array, ParamState)> {
    let mut st = match state {
        Some(st) => st,
        None => rule.init_state(grad)?,
    };
    let updated = rule.update(param, grad, &mut st, lr, step)?;
    Ok((updated, st))
}
