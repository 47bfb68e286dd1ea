//! Where the time of an update with the optimizer state on the host goes.

use std::time::Duration;

/// The parts of the last [`Optimizer::update`](super::Optimizer::update)
/// made with the state on the host ([`Optimizer::set_state_on_host`](
/// super::Optimizer::set_state_on_host)), summed over its groups of
/// parameters. The host's own time in each part is measured; with the
/// groups pipelined, the device works on one group while the host copies
/// another, so the parts add up to the update's wall time, not to the
/// device's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostUpdateTimings {
    /// Groups of parameters updated.
    pub groups: usize,
    /// Bringing the groups' state from host memory into arrays.
    pub restore: Duration,
    /// Building each group's update and queueing it for evaluation.
    pub queue: Duration,
    /// Waiting for the device to finish a group's update.
    pub wait: Duration,
    /// Copying the new state back into the host buffers and the new values
    /// into the model.
    pub store: Duration,
}

impl HostUpdateTimings {
    /// The four parts together.
    pub fn total(&self) -> Duration {
        self.restore + self.queue + self.wait + self.store
    }
}
