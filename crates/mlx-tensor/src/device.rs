//! Devices, streams and evaluation.
//!
//! MLX runs operations on a stream of a device. Each thread has its own
//! default stream per device: arrays built on one thread are evaluated on
//! that thread's stream. Evaluate (or [`Array::eval`]) before handing arrays
//! to another thread; evaluated arrays move freely.

use mlx_ffi::ffi::{self, DeviceSpec, StreamSpec};

use crate::array::check_with;
use crate::ops::to_array_vec;
use crate::{Array, Error, Result};

/// A compute device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU.
    Cpu,
    /// GPU number `n`.
    Gpu(i32),
}

impl Device {
    fn spec(self) -> DeviceSpec {
        match self {
            Device::Cpu => DeviceSpec { kind: 0, index: 0 },
            Device::Gpu(index) => DeviceSpec { kind: 1, index },
        }
    }

    fn from_spec(spec: DeviceSpec) -> Device {
        if spec.kind == 1 {
            Device::Gpu(spec.index)
        } else {
            Device::Cpu
        }
    }

    /// The device new operations use by default.
    pub fn default_device() -> Device {
        Device::from_spec(ffi::default_device())
    }

    /// Makes this the default device.
    pub fn set_default(self) -> Result<()> {
        ffi::set_default_device(self.spec()).map_err(|e| Error::Invalid {
            op: "Device::set_default",
            message: e.what().to_string(),
        })
    }

    /// Whether MLX can run on this device here.
    pub fn is_available(self) -> bool {
        ffi::device_available(self.spec())
    }

    /// Number of GPUs MLX sees.
    pub fn gpu_count() -> i32 {
        ffi::device_count(1)
    }

    /// The GPU when one is available, else the CPU.
    pub fn best() -> Device {
        if Device::Gpu(0).is_available() {
            Device::Gpu(0)
        } else {
            Device::Cpu
        }
    }
}

/// A stream of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stream {
    spec: StreamSpec,
}

impl Stream {
    /// This thread's default stream on `device`.
    pub fn default_for(device: Device) -> Result<Stream> {
        ffi::default_stream(device.spec())
            .map(|spec| Stream { spec })
            .map_err(|e| Error::Invalid {
                op: "Stream::default_for",
                message: e.what().to_string(),
            })
    }

    /// A new stream on `device`.
    pub fn new(device: Device) -> Result<Stream> {
        ffi::new_stream(device.spec())
            .map(|spec| Stream { spec })
            .map_err(|e| Error::Invalid {
                op: "Stream::new",
                message: e.what().to_string(),
            })
    }

    /// Makes this stream the default for its device on this thread.
    pub fn set_default(self) -> Result<()> {
        ffi::set_default_stream(self.spec).map_err(|e| Error::Invalid {
            op: "Stream::set_default",
            message: e.what().to_string(),
        })
    }

    /// The stream's device.
    pub fn device(self) -> Device {
        Device::from_spec(self.spec.device)
    }

    /// The stream's index.
    pub fn index(self) -> i32 {
        self.spec.index
    }

    /// Waits for everything queued on this stream.
    pub fn synchronize(self) -> Result<()> {
        ffi::synchronize(self.spec).map_err(|e| Error::Invalid {
            op: "Stream::synchronize",
            message: e.what().to_string(),
        })
    }
}

/// Waits for everything queued on this thread's default stream.
pub fn synchronize() -> Result<()> {
    ffi::synchronize_default().map_err(|e| Error::Invalid {
        op: "synchronize",
        message: e.what().to_string(),
    })
}

/// Evaluates several arrays together (shared work is done once).
#[track_caller]
pub fn eval(arrays: &[&Array]) -> Result<()> {
    let list = to_array_vec(arrays);
    match list.as_ref() {
        Some(l) => check_with("eval", arrays, ffi::eval_all(l)),
        None => Ok(()),
    }
}

/// Starts evaluating arrays in the background and returns at once; a later
/// read-back or [`eval`] waits for the result. Use it to queue the next step
/// while the host handles the current one.
#[track_caller]
pub fn async_eval(arrays: &[&Array]) -> Result<()> {
    let list = to_array_vec(arrays);
    match list.as_ref() {
        Some(l) => check_with("async_eval", arrays, ffi::async_eval_all(l)),
        None => Ok(()),
    }
}

/// MLX's version string.
pub fn mlx_version() -> String {
    ffi::mlx_version()
}
