//! Settings the benches read from the environment.

#![allow(dead_code)] // each bench uses part of it

use mlx_tensor::{Device, Dtype};

/// `name` parsed as `T`, or `default` when unset or unparsable.
pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `name` as a comma-separated list of `T` (`default` when unset);
/// entries that do not parse are skipped.
pub fn env_list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect()
}

/// `name` as a dtype: `f32`, `f16`, anything else bf16.
pub fn env_dtype(name: &str) -> Dtype {
    match std::env::var(name).as_deref() {
        Ok("f32") => Dtype::F32,
        Ok("f16") => Dtype::F16,
        _ => Dtype::BF16,
    }
}

/// Makes `name` (`cpu` or `gpu`) MLX's default device; MLX's choice stays
/// when it is unset. A bench cannot go on without the device it asked for.
pub fn select_device(name: &str) {
    let device = match std::env::var(name).as_deref() {
        Ok("cpu") => Some(Device::Cpu),
        Ok("gpu") => Some(Device::Gpu(0)),
        _ => None,
    };
    if let Some(device) = device {
        device
            .set_default()
            .unwrap_or_else(|e| panic!("cannot use {device:?}: {e}"));
    }
}
