//! Optimizer state kept in host memory and moved to the device one group of
//! parameters at a time for an update (as DeepSpeed's optimizer offload
//! keeps it).

use std::collections::BTreeMap;
use std::time::Instant;

use mlx_tensor::{Array, Dtype, HostArray};

use super::state_store::byte_groups;
use super::{HostUpdateTimings, ParamState};
use crate::module::ParamMap;
use crate::{Error, Result};

/// One parameter's state slots copied to host memory.
pub(super) type HostState = BTreeMap<String, HostArray>;

/// Every parameter's host state by the parameter's name.
pub(super) type HostStates = BTreeMap<String, HostState>;

/// A parameter's name, a slot's name and the slot's host copy.
type SlotRef<'a> = (&'a String, &'a str, &'a HostArray);

/// Host copies of a parameter's state slots (evaluates them).
pub(super) fn to_host(state: &ParamState) -> Result<HostState> {
    state
        .iter()
        .map(|(slot, a)| Ok((slot.to_string(), HostArray::from_array(a)?)))
        .collect()
}

/// A parameter's state as MLX arrays again.
pub(super) fn to_device(state: &HostState) -> Result<ParamState> {
    let mut st = ParamState::new();
    for (slot, h) in state {
        st.set(slot, h.to_array()?);
    }
    Ok(st)
}

/// Bytes of every slot in `host`.
pub(super) fn host_bytes(host: &HostStates) -> usize {
    host.values()
        .flat_map(|st| st.values())
        .map(HostArray::nbytes)
        .sum()
}

/// Updates the parameters of `grads` (in their order) in groups of about
/// `group_bytes` of gradients: a group's state comes from `host` to the
/// device, `update_one(name, grad, state)` gives each parameter's new value
/// and new state (`state` is `None` before its first update), the group is
/// evaluated, its new state is copied back into the same host buffers and
/// its new values go to `store_values`, so at most two groups' state (old
/// and new) are on the device. The groups are pipelined: the next group's
/// state is copied over and its update queued before the current group's
/// new state is copied back, so the host's copies overlap the device's
/// work.
///
/// An error part way (MLX failing to evaluate) leaves the groups before it
/// stored, each parameter's value together with its state.
pub(super) fn update_in_groups(
    host: &mut HostStates,
    grads: &ParamMap,
    group_bytes: usize,
    mut update_one: impl FnMut(&String, &Array, Option<ParamState>) -> Result<(Array, ParamState)>,
    mut store_values: impl FnMut(ParamMap),
) -> Result<HostUpdateTimings> {
    let names: Vec<&String> = grads.keys().collect();
    let groups = byte_groups(grads.values().map(Array::nbytes), group_bytes);
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
                .filter_map(|name| host.get(*name))
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
        let mut restored = restore_group(host, group, group_bytes)?;
        let restored_at = Instant::now();
        timings.restore += restored_at - started;
        let mut updated = ParamMap::new();
        let mut states = Vec::new();
        for &name in group {
            let (value, st) = update_one(name, &grads[name], restored.remove(name.as_str()))?;
            updated.insert(name.clone(), value);
            states.push((name.clone(), st));
        }
        let queued = QueuedGroup::queue(updated, states, group_bytes)?;
        timings.queue += restored_at.elapsed();
        if let Some(previous) = in_flight.replace(queued) {
            finish_group(host, previous, group_bytes, &mut store_values, &mut timings)?;
        }
    }
    if let Some(last) = in_flight.take() {
        finish_group(host, last, group_bytes, &mut store_values, &mut timings)?;
    }
    Ok(timings)
}

/// Waits for a queued group, copies its new state into the host buffers
/// (made on the first update) and hands its new values to `store_values`.
fn finish_group(
    host_states: &mut HostStates,
    queued: QueuedGroup,
    group_bytes: usize,
    store_values: &mut impl FnMut(ParamMap),
    timings: &mut HostUpdateTimings,
) -> Result<()> {
    let QueuedGroup {
        updated,
        states,
        flats,
    } = queued;
    let started = Instant::now();
    let outputs: Vec<&Array> = updated.values().collect();
    mlx_tensor::eval(&outputs)?;
    let evaluated = Instant::now();
    timings.wait += evaluated - started;
    let alone = |nbytes: usize| moves_alone(nbytes, group_bytes);
    // Slots that move alone are copied into their host arrays here, the
    // others from the flat arrays below.
    for (name, st) in &states {
        let host = host_states.entry(name.clone()).or_default();
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
        let mut outs: Vec<&mut [u8]> = host_states
            .iter_mut()
            .filter(|(name, _)| group.contains(name))
            .flat_map(|(_, st)| st.values_mut())
            .filter(|h| h.dtype() == *dtype && !alone(h.nbytes()))
            .map(HostArray::bytes_mut)
            .collect();
        flat.write_byte_parts(&mut outs)?;
    }
    store_values(updated);
    timings.store += evaluated.elapsed();
    Ok(())
}

/// The host state of the parameters `group` as MLX arrays: one flat array
/// per dtype (one allocation and one copy for the group) and a view of it
/// per slot, except that slots of [`moves_alone`] size come over as arrays
/// of their own (their buffers can then be reused in place by the update).
/// Parameters without state are left out.
fn restore_group(
    host: &HostStates,
    group: &[&String],
    group_bytes: usize,
) -> Result<BTreeMap<String, ParamState>> {
    let mut by_dtype: Vec<(Dtype, Vec<SlotRef<'_>>)> = Vec::new();
    let mut out: BTreeMap<String, ParamState> = BTreeMap::new();
    for &name in group {
        for (slot, h) in host.get(name).into_iter().flatten() {
            if moves_alone(h.nbytes(), group_bytes) {
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
