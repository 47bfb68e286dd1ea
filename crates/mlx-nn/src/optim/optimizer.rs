//! The tree walker: applies an [`UpdateRule`] to every trainable parameter.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use mlx_tensor::{io, Array, Dtype, HostArray};

use super::state_check::{check_against_params, group_by_param, parse_step};
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
    state: BTreeMap<String, ParamState>,
    /// The state while it is kept on the host (empty otherwise).
    host_state: BTreeMap<String, HostState>,
    state_on_host: bool,
    group_bytes: usize,
    /// Where the last update through the host spent its time.
    host_timings: Option<HostUpdateTimings>,
}

/// One parameter's state slots copied to host memory.
type HostState = BTreeMap<String, HostArray>;

/// A parameter's name, a slot's name and the slot's host copy.
type SlotRef<'a> = (&'a String, &'a str, &'a HostArray);

impl<R: UpdateRule> Optimizer<R> {
    /// A fresh optimizer (step 0, no state yet: each parameter's state is
    /// created at its first update).
    pub fn new(rule: R, learning_rate: impl Into<Schedule>) -> Self {
        Optimizer {
            rule,
            schedule: learning_rate.into(),
            step: 0,
            state: BTreeMap::new(),
            host_state: BTreeMap::new(),
            state_on_host: false,
            group_bytes: EVAL_GROUP_BYTES,
            host_timings: None,
        }
    }

    /// Where the last [`Optimizer::update`] with the state on the host spent
    /// its time (`None` before the first one, and after an `update` with
    /// the state on the device).
    pub fn last_host_update_timings(&self) -> Option<HostUpdateTimings> {
        self.host_timings
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
        self.state_on_host
    }

    /// Keeps the state in host memory between updates (`true`) or in MLX
    /// arrays (`false`), moving the existing state over. With the state on
    /// the host, [`Optimizer::update`] evaluates the new parameters group by
    /// group as it goes (there is nothing left for
    /// [`Optimizer::eval_with`] but the extras), and
    /// [`Optimizer::state`] is empty: [`Optimizer::host_state_bytes`] and
    /// [`Optimizer::state_dict`] still see it.
    pub fn set_state_on_host(&mut self, on_host: bool) -> Result<()> {
        if on_host == self.state_on_host {
            return Ok(());
        }
        if on_host {
            let mut host = BTreeMap::new();
            for (name, st) in &self.state {
                host.insert(name.clone(), to_host(st)?);
            }
            self.host_state = host;
            self.state.clear();
        } else {
            let mut device = BTreeMap::new();
            for (name, st) in &self.host_state {
                device.insert(name.clone(), to_device(st)?);
            }
            self.state = device;
            self.host_state.clear();
        }
        self.state_on_host = on_host;
        Ok(())
    }

    /// Bytes of state held in host memory (0 unless the state is on the
    /// host).
    pub fn host_state_bytes(&self) -> usize {
        self.host_state
            .values()
            .flat_map(|st| st.values())
            .map(HostArray::nbytes)
            .sum()
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
    ///
    /// With the state on the host (see [`Optimizer::set_state_on_host`]),
    /// every parameter's state is brought to the device for this call: use
    /// [`Optimizer::update`], which moves one group at a time.
    pub fn apply_gradients(&mut self, grads: &ParamMap, params: &ParamMap) -> Result<ParamMap> {
        check_gradients(grads, params)?;
        if self.state_on_host {
            let mut device = BTreeMap::new();
            for name in grads.keys() {
                if let Some(st) = self.host_state.get(name) {
                    device.insert(name.clone(), to_device(st)?);
                }
            }
            let host = std::mem::take(&mut self.host_state);
            self.state = device;
            let result = self.apply_gradients_on_device(grads, params);
            let device = std::mem::take(&mut self.state);
            self.host_state = host;
            let out = result?;
            // The new state's arrays are evaluated here to copy them back.
            for (name, st) in &device {
                self.host_state.insert(name.clone(), to_host(st)?);
            }
            return Ok(out);
        }
        self.apply_gradients_on_device(grads, params)
    }

    fn apply_gradients_on_device(
        &mut self,
        grads: &ParamMap,
        params: &ParamMap,
    ) -> Result<ParamMap> {
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
        self.host_timings = None;
        if self.state_on_host {
            return self.update_through_host(model, &used, trainable);
        }
        let updated = self.apply_gradients(&used, &trainable)?;
        model.for_each_param_mut(|name, p| {
            if let Some(v) = updated.get(name) {
                p.value = v.clone();
            }
        });
        Ok(())
    }

    /// [`Optimizer::update`] with the state on the host: for each group of
    /// about [`Optimizer::group_bytes`] of parameters, its state comes to the
    /// device, the group is updated and evaluated, the new state is copied
    /// back into the same host buffers and the new values go into `model`,
    /// so at most two groups' state (old and new) are on the device. The
    /// groups are pipelined: the next group's state is copied over and its
    /// update queued before the current group's new state is copied back,
    /// so the host's copies overlap the device's work.
    ///
    /// An error part way (MLX failing to evaluate) leaves the groups before
    /// it updated, each parameter together with its state, and the step
    /// count unchanged.
    fn update_through_host<M: Module + ?Sized>(
        &mut self,
        model: &mut M,
        grads: &ParamMap,
        mut params: ParamMap,
    ) -> Result<()> {
        check_gradients(grads, &params)?;
        let lr = self.schedule.at(self.step)?;
        let step = self.step + 1;
        let names: Vec<&String> = grads.keys().collect();
        let groups = byte_groups(grads.values().map(Array::nbytes), self.group_bytes);
        // MLX's cache keeps about the two groups' state buffers in flight:
        // the next group's state (same shapes, layer after layer) is copied
        // into buffers whose pages are already mapped, and the other freed
        // buffers (host-visible ones under CUDA, which a device result
        // would otherwise be written into through page faults) are
        // released.
        let largest_group_state = groups
            .iter()
            .map(|&(start, end)| {
                names[start..end]
                    .iter()
                    .filter_map(|name| self.host_state.get(*name))
                    .flat_map(|st| st.values())
                    .map(HostArray::nbytes)
                    .sum::<usize>()
            })
            .max()
            .unwrap_or(0);
        let _cache = CacheLimit::set(2 * largest_group_state + largest_group_state / 2);
        let mut timings = HostUpdateTimings {
            groups: groups.len(),
            ..HostUpdateTimings::default()
        };
        let mut in_flight: Option<QueuedGroup> = None;
        for (start, end) in groups {
            let group = &names[start..end];
            let started = Instant::now();
            let mut restored = self.restore_group(group)?;
            let restored_at = Instant::now();
            timings.restore += restored_at - started;
            let mut updated = ParamMap::new();
            let mut states = Vec::new();
            for &name in group {
                let param = params
                    .remove(name)
                    .ok_or_else(|| Error::UnknownParameter { name: name.clone() })?;
                let grad = &grads[name];
                let mut st = match restored.remove(name.as_str()) {
                    Some(st) => st,
                    None => self.rule.init_state(grad)?,
                };
                updated.insert(
                    name.clone(),
                    self.rule.update(&param, grad, &mut st, &lr, step)?,
                );
                states.push((name.clone(), st));
            }
            let queued = QueuedGroup::queue(updated, states, self.group_bytes)?;
            timings.queue += restored_at.elapsed();
            if let Some(previous) = in_flight.replace(queued) {
                self.finish_group(previous, model, &mut timings)?;
            }
        }
        if let Some(last) = in_flight.take() {
            self.finish_group(last, model, &mut timings)?;
        }
        self.step = step;
        self.host_timings = Some(timings);
        Ok(())
    }

    /// Waits for a queued group, copies its new state into the host
    /// buffers (made on the first update) and puts its new values into
    /// `model`.
    fn finish_group<M: Module + ?Sized>(
        &mut self,
        queued: QueuedGroup,
        model: &mut M,
        timings: &mut HostUpdateTimings,
    ) -> Result<()> {
        let QueuedGroup {
            mut updated,
            states,
            flats,
        } = queued;
        let started = Instant::now();
        let outputs: Vec<&Array> = updated.values().collect();
        mlx_tensor::eval(&outputs)?;
        let evaluated = Instant::now();
        timings.wait += evaluated - started;
        let group_bytes = self.group_bytes;
        let alone = |nbytes: usize| moves_alone(nbytes, group_bytes);
        // Slots that move alone are copied into their host arrays here, the
        // others from the flat arrays below.
        for (name, st) in &states {
            let host = self.host_state.entry(name.clone()).or_default();
            let slots = st.names();
            host.retain(|slot, _| slots.contains(&slot.as_str()));
            for (slot, a) in st.iter() {
                let fits = host
                    .get(slot)
                    .is_some_and(|h| h.shape() == a.shape().0.as_slice() && h.dtype() == a.dtype());
                if alone(a.nbytes()) {
                    match host.get_mut(slot).filter(|_| fits) {
                        Some(h) => h.copy_from(a)?,
                        None => {
                            host.insert(slot.to_string(), HostArray::from_array(a)?);
                        }
                    }
                } else if !fits {
                    host.insert(slot.to_string(), HostArray::zeros(a.shape().0, a.dtype())?);
                }
            }
        }
        let group: Vec<String> = states.into_iter().map(|(name, _)| name).collect();
        for (dtype, flat) in &flats {
            let mut outs: Vec<&mut [u8]> = self
                .host_state
                .iter_mut()
                .filter(|(name, _)| group.contains(name))
                .flat_map(|(_, st)| st.values_mut())
                .filter(|h| h.dtype() == *dtype && !alone(h.nbytes()))
                .map(HostArray::bytes_mut)
                .collect();
            flat.write_byte_parts(&mut outs)?;
        }
        model.for_each_param_mut(|name, p| {
            if let Some(v) = updated.remove(name) {
                p.value = v;
            }
        });
        timings.store += evaluated.elapsed();
        Ok(())
    }

    /// The host state of the parameters `group` as MLX arrays: one flat
    /// array per dtype (one allocation and one copy for the group) and a
    /// view of it per slot, except that slots of [`moves_alone`] size come
    /// over as arrays of their own (their buffers can then be reused in
    /// place by the update). Parameters without state are left out.
    fn restore_group(&self, group: &[&String]) -> Result<BTreeMap<String, ParamState>> {
        let mut by_dtype: Vec<(Dtype, Vec<SlotRef<'_>>)> = Vec::new();
        let mut out: BTreeMap<String, ParamState> = BTreeMap::new();
        for &name in group {
            for (slot, h) in self.host_state.get(name).into_iter().flatten() {
                if moves_alone(h.nbytes(), self.group_bytes) {
                    out.entry(name.clone())
                        .or_default()
                        .set(slot, h.to_array()?);
                    continue;
                }
                match by_dtype.iter_mut().find(|(d, _)| *d == h.dtype()) {
                    Some((_, list)) => list.push((name, slot, h)),
                    None => by_dtype.push((h.dtype(), vec![(name, slot, h)])),
                }
            }
        }
        for (dtype, list) in by_dtype {
            let parts: Vec<&[u8]> = list.iter().map(|(_, _, h)| h.bytes()).collect();
            let flat = Array::from_byte_parts(&parts, dtype)?;
            let mut at = 0i32;
            for (name, slot, h) in list {
                let len = i32::try_from(h.nbytes() / dtype.size_of()).map_err(|_| {
                    Error::OptimizerState(format!("state `{name}.{slot}` is too large"))
                })?;
                let view = flat
                    .slice_axis(0, at, Some(at + len), 1)?
                    .reshape(h.shape())?;
                out.entry(name.clone()).or_default().set(slot, view);
                at += len;
            }
        }
        Ok(out)
    }

    /// Every state array (to evaluate together with the parameters); none
    /// while the state is on the host.
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
                if let Some(st) = self.state.get(name) {
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
        let mut tensors = ParamMap::new();
        for (name, st) in &self.state {
            for (slot, a) in st.iter() {
                tensors.insert(format!("{name}.{slot}"), a.clone());
            }
        }
        for (name, st) in &self.host_state {
            for (slot, h) in st {
                tensors.insert(format!("{name}.{slot}"), h.to_array()?);
            }
        }
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
        if self.state_on_host {
            let mut host = BTreeMap::new();
            for (name, st) in &state {
                host.insert(name.clone(), to_host(st)?);
            }
            self.host_state = host;
        } else {
            self.state = state;
        }
        self.step = step;
        Ok(())
    }

    /// Saves the state to a safetensors file (atomically). State kept on
    /// the host is written from host memory.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        if self.state_on_host {
            let names: Vec<(String, &HostArray)> = self
                .host_state
                .iter()
                .flat_map(|(name, st)| {
                    st.iter()
                        .map(move |(slot, h)| (format!("{name}.{slot}"), h))
                })
                .collect();
            io::save_host_safetensors(
                path,
                names.iter().map(|(k, h)| (k.as_str(), *h)),
                &self.metadata(),
            )?;
            return Ok(());
        }
        let (tensors, meta) = self.state_dict()?;
        io::save_safetensors(path, tensors.iter().map(|(k, v)| (k.as_str(), v)), &meta)?;
        Ok(())
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

/// Host copies of a parameter's state slots (evaluates them).
fn to_host(state: &ParamState) -> Result<HostState> {
    state
        .iter()
        .map(|(slot, a)| Ok((slot.to_string(), HostArray::from_array(a)?)))
        .collect()
}

/// A parameter's state as MLX arrays again.
fn to_device(state: &HostState) -> Result<ParamState> {
    let mut st = ParamState::new();
    for (slot, h) in state {
        st.set(slot, h.to_array()?);
    }
    Ok(st)
}

/// One group's update, queued on the device: the new parameter values,
/// the new state, and the state slots that move together flattened into
/// one array per dtype (in parameter, slot order: one read-back each).
struct QueuedGroup {
    updated: ParamMap,
    states: Vec<(String, ParamState)>,
    flats: Vec<(Dtype, Array)>,
}

impl QueuedGroup {
    /// Builds the flat arrays and queues everything with `async_eval`.
    fn queue(
        updated: ParamMap,
        states: Vec<(String, ParamState)>,
        group_bytes: usize,
    ) -> Result<QueuedGroup> {
        let alone = |nbytes: usize| moves_alone(nbytes, group_bytes);
        let mut lists: Vec<(Dtype, Vec<Array>)> = Vec::new();
        for (_, st) in &states {
            for (_, a) in st.iter().filter(|(_, a)| !alone(a.nbytes())) {
                let flat = a.reshape(&[-1])?;
                match lists.iter_mut().find(|(d, _)| *d == a.dtype()) {
                    Some((_, list)) => list.push(flat),
                    None => lists.push((a.dtype(), vec![flat])),
                }
            }
        }
        let flats: Vec<(Dtype, Array)> = lists
            .into_iter()
            .map(|(dtype, list)| {
                let refs: Vec<&Array> = list.iter().collect();
                Ok((dtype, mlx_tensor::concatenate(&refs, 0)?))
            })
            .collect::<Result<_>>()?;
        let mut outputs: Vec<&Array> = updated.values().collect();
        outputs.extend(flats.iter().map(|(_, a)| a));
        outputs.extend(
            states
                .iter()
                .flat_map(|(_, st)| st.iter().map(|(_, a)| a))
                .filter(|a| alone(a.nbytes())),
        );
        mlx_tensor::async_eval(&outputs)?;
        Ok(QueuedGroup {
            updated,
            states,
            flats,
        })
    }
}

/// Consecutive index ranges of items of sizes `sizes`, each closed once its
/// bytes reach `limit` (at least one item a range; the last may be short).
fn byte_groups(sizes: impl IntoIterator<Item = usize>, limit: usize) -> Vec<(usize, usize)> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    let mut end = 0;
    for size in sizes {
        bytes += size;
        end += 1;
        if bytes >= limit {
            groups.push((start, end));
            start = end;
            bytes = 0;
        }
    }
    if start < end {
        groups.push((start, end));
    }
    groups
}

/// Whether a state slot of `nbytes` moves between host and MLX memory on
/// its own rather than in its group's flat array (from half the group size
/// up): a fixed cost per move (allocating host-visible memory) matters for
/// small slots, a second group-sized buffer for large ones.
fn moves_alone(nbytes: usize, group_bytes: usize) -> bool {
    nbytes >= (group_bytes / 2).max(1)
}

/// MLX's cache limit for a scope; the previous limit comes back on drop.
struct CacheLimit(usize);

impl CacheLimit {
    fn set(bytes: usize) -> CacheLimit {
        CacheLimit(mlx_tensor::memory::set_cache_limit(bytes))
    }
}

impl Drop for CacheLimit {
    fn drop(&mut self) {
        mlx_tensor::memory::set_cache_limit(self.0);
    }
}
