//! Raw bridge to the MLX C++ library, version 0.32.4.
//!
//! This crate is the bottom layer of the workspace: a [`cxx`] bridge over
//! `mlx::core` plus a build script that finds or provisions MLX. Use
//! `mlx-tensor` for a typed, safe API; this crate's functions take and return
//! raw handles.
//!
//! # Finding MLX
//!
//! The build script uses `MLX_DIR` when it is set (an install prefix with
//! `include/` and `lib/libmlx.so`). Otherwise it downloads the official wheel
//! pinned to 0.32.4 (`mlx-cpu`, or `mlx-cuda-13` with the `cuda` feature)
//! with `python3 -m pip download`, checks its sha256 against the value pinned
//! in the source and unpacks it into a cache shared by all builds
//! (`MLX_CACHE_DIR`, default `~/.cache/mlx-grpo`). A warm cache needs no
//! network. On the CPU build, MLX is pointed at the system OpenBLAS when one is
//! installed (`apt-get install libopenblas0-pthread`): about 30 times faster
//! matrix products than the wheel's reference BLAS.
//!
//! Binaries that link MLX through this crate, directly or through any crate
//! above it, find `libmlx.so` with no `LD_LIBRARY_PATH`: the library is
//! recorded by absolute path. Set `MLX_LINK_MODE=rpath` to record it by name
//! instead, so that `LD_LIBRARY_PATH` can swap in another build of MLX 0.32.4
//! (for instance the CUDA one on a GPU machine).
//!
//! # Errors and panics
//!
//! Every bridged function that can throw returns `Result`, so a C++
//! exception is an `Err(cxx::Exception)`, never an abort. Rust closures that
//! C++ calls back ([`RustFn`]) run inside `catch_unwind`; a panic becomes an
//! error that MLX propagates to the caller.

#![deny(missing_docs)]

mod bridge;

pub use bridge::ffi;
pub use bridge::{RustFn, panic_message};
pub use cxx;

/// The MLX version this crate binds.
pub const MLX_VERSION: &str = "0.32.4";

/// Directory of the `libmlx.so` that binaries load (empty in docs-only builds).
pub const MLX_LIB_DIR: &str = match option_env!("MLX_FFI_LIB_DIR") {
    Some(dir) => dir,
    None => "",
};

/// Which BLAS the CPU build of MLX was pointed at.
pub const MLX_BLAS: &str = match option_env!("MLX_FFI_BLAS") {
    Some(blas) => blas,
    None => "unknown (docs-only build)",
};
