//! Where an optimizer's state lives: MLX arrays, or host copies moved to
//! the device one group of parameters at a time.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mlx_tensor::{Array, HostArray, io};

use super::host_offload::{self, HostStates};
use super::{HostUpdateTimings, ParamState};
use crate::Result;
use crate::module::ParamMap;

/// Every parameter's state by the parameter's name, in MLX arrays or in
/// host memory.
#[derive(Debug, Clone, Default)]
pub(super) struct StateStore {
    /// The state while it is kept in MLX arrays (empty otherwise).
    device: BTreeMap<String, ParamState>,
    /// The state while it is kept on the host (empty otherwise).
    host: HostStates,
    on_host: bool,
    /// Where the last update through the host spent its time.
    timings: Option<HostUpdateTimings>,
}

impl StateStore {
    /// Whether the state is kept in host memory.
    pub(super) fn on_host(&self) -> bool {
        self.on_host
    }

    /// Moves the state to host memory (`true`) or into MLX arrays.
    pub(super) fn set_on_host(&mut self, on_host: bool) -> Result<()> {
        if on_host == self.on_host {
            return Ok(());
        }
        if on_host {
            let mut host = BTreeMap::new();
            for (name, st) in &self.device {
                host.insert(name.clone(), host_offload::to_host(st)?);
            }
            self.host = host;
            self.device.clear();
        } else {
            let mut device = BTreeMap::new();
            for (name, st) in &self.host {
                device.insert(name.clone(), host_offload::to_device(st)?);
            }
            self.device = device;
            self.host.clear();
        }
        self.on_host = on_host;
        Ok(())
    }

    /// Bytes of state held in host memory.
    pub(super) fn host_bytes(&self) -> usize {
        host_offload::host_bytes(&self.host)
    }

    /// The state kept in MLX arrays (empty while it is on the host).
    pub(super) fn device(&self) -> &BTreeMap<String, ParamState> {
        &self.device
    }

    /// Where the last [`StateStore::update`] through the host spent its
    /// time.
    pub(super) fn timings(&self) -> Option<HostUpdateTimings> {
        self.timings
    }

    /// Parameter `name`'s state as MLX arrays (`None` before its first
    /// update).
    fn get(&self, name: &str) -> Result<Option<ParamState>> {
        if self.on_host {
            self.host.get(name).map(host_offload::to_device).transpose()
        } else {
            Ok(self.device.get(name).cloned())
        }
    }

    /// Updates every parameter of `grads` at once: `update_one(name, grad,
    /// state)` gives its new value and new state (`state` is `None` before
    /// its first update). The new state is kept only once every parameter
    /// succeeded (copied to the host, evaluated, when the state lives
    /// there); the new values are returned.
    pub(super) fn update_all(
        &mut self,
        grads: &ParamMap,
        mut update_one: impl FnMut(&String, &Array, Option<ParamState>) -> Result<(Array, ParamState)>,
    ) -> Result<ParamMap> {
        let mut values = ParamMap::new();
        let mut states = BTreeMap::new();
        for (name, grad) in grads {
            let (value, st) = update_one(name, grad, self.get(name)?)?;
            states.insert(name.clone(), st);
            values.insert(name.clone(), value);
        }
        if self.on_host {
            for (name, st) in &states {
                self.host.insert(name.clone(), host_offload::to_host(st)?);
            }
        } else {
            self.device.extend(states);
        }
        Ok(values)
    }

    /// Updates every parameter of `grads` as [`StateStore::update_all`]
    /// does and hands the new values to `store_values`; with the state on
    /// the host, group by group of about `group_bytes` of gradients (see
    /// [`host_offload::update_in_groups`]), recording the timings.
    pub(super) fn update(
        &mut self,
        grads: &ParamMap,
        group_bytes: usize,
        update_one: impl FnMut(&String, &Array, Option<ParamState>) -> Result<(Array, ParamState)>,
        mut store_values: impl FnMut(ParamMap),
    ) -> Result<()> {
        self.timings = None;
        if self.on_host {
            let timings = host_offload::update_in_groups(
                &mut self.host,
                grads,
                group_bytes,
                update_one,
                store_values,
            )?;
            self.timings = Some(timings);
        } else {
            store_values(self.update_all(grads, update_one)?);
        }
        Ok(())
    }

    /// The state as MLX arrays named `<param>.<slot>` (new arrays copied
    /// from host memory while the state lives there).
    pub(super) fn tensors(&self) -> Result<ParamMap> {
        let mut tensors = ParamMap::new();
        for (name, st) in &self.device {
            for (slot, a) in st.iter() {
                tensors.insert(format!("{name}.{slot}"), a.clone());
            }
        }
        for (name, st) in &self.host {
            for (slot, h) in st {
                tensors.insert(format!("{name}.{slot}"), h.to_array()?);
            }
        }
        Ok(tensors)
    }

    /// Replaces the state with `state` (copied to the host when the state
    /// lives there; nothing changes on an error).
    pub(super) fn install(&mut self, state: BTreeMap<String, ParamState>) -> Result<()> {
        if self.on_host {
            let mut host = BTreeMap::new();
            for (name, st) in &state {
                host.insert(name.clone(), host_offload::to_host(st)?);
            }
            self.host = host;
        } else {
            self.device = state;
        }
        Ok(())
    }

    /// Saves the state as [`StateStore::tensors`] with `metadata` to a
    /// safetensors file (atomically), from host memory when it lives there.
    pub(super) fn save(&self, path: &Path, metadata: &HashMap<String, String>) -> Result<()> {
        if self.on_host {
            let names: Vec<(String, &HostArray)> = self
                .host
                .iter()
                .flat_map(|(name, st)| {
                    st.iter()
                        .map(move |(slot, h)| (format!("{name}.{slot}"), h))
                })
                .collect();
            io::save_host_safetensors(path, names.iter().map(|(k, h)| (k.as_str(), *h)), metadata)?;
        } else {
            let tensors = self.tensors()?;
            io::save_safetensors(path, tensors.iter().map(|(k, v)| (k.as_str(), v)), metadata)?;
        }
        Ok(())
    }
}

/// Consecutive index ranges of items of sizes `sizes`, each closed once its
/// bytes reach `limit` (at least one item a range; the last may be short).
pub(super) fn byte_groups(
    sizes: impl IntoIterator<Item = usize>,
    limit: usize,
) -> Vec<(usize, usize)> {
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
