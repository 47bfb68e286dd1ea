//! Linking the CUDA build of MLX on a machine without the NVIDIA driver.
//!
//! The CUDA `libmlx.so` needs `libcuda.so.1`, which only the NVIDIA driver
//! installs. GNU ld refuses to link an executable against a library whose
//! own dependencies leave symbols undefined, so on a build machine without
//! the driver (CI, a container, a laptop building for a GPU server) the link
//! would fail. There the farm gets a stub `libcuda.so.1` that defines the
//! driver functions MLX calls; the linker script passes it `AS_NEEDED`, so no
//! executable records it, and where the binaries run the dynamic loader
//! resolves those functions from the real driver.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Driver entry points that the pinned `mlx-cuda-13` 0.32.4 library imports
/// (from `nm -D --undefined-only libmlx.so`); any others `nm` finds are added.
const DRIVER_SYMBOLS: &[&str] = &[
    "cuFuncSetAttribute",
    "cuGetErrorString",
    "cuGraphAddKernelNode_v2",
    "cuGraphCreate",
    "cuGraphGetNodes",
    "cuGraphKernelNodeSetAttribute",
    "cuLaunchKernelEx",
    "cuModuleGetFunction",
    "cuModuleLoadDataEx",
    "cuModuleUnload",
    "cuOccupancyMaxPotentialBlockSize",
    "cuTensorMapEncodeTiled",
];

/// Whether `library` (a `libmlx.so`) links the CUDA driver.
pub fn needs_driver(library: &Path) -> bool {
    fs::read(library)
        .map(|bytes| bytes.windows(12).any(|w| w == b"libcuda.so.1"))
        .unwrap_or(false)
}

/// Whether the linker will find a real `libcuda.so.1` by itself.
pub fn driver_installed() -> bool {
    if let Ok(out) = Command::new("ldconfig").arg("-p").output()
        && String::from_utf8_lossy(&out.stdout).contains("libcuda.so.1")
    {
        return true;
    }
    let mut dirs: Vec<PathBuf> = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/lib/x86_64-linux-gnu",
        "/usr/local/nvidia/lib64",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    if let Some(paths) = env::var_os("LD_LIBRARY_PATH") {
        dirs.extend(env::split_paths(&paths));
    }
    dirs.iter().any(|d| d.join("libcuda.so.1").exists())
}

/// Builds `dir/libcuda.so.1` exporting every driver function `library`
/// imports, and returns its path.
pub fn build(library: &Path, dir: &Path) -> Result<PathBuf, String> {
    let mut symbols: Vec<String> = DRIVER_SYMBOLS.iter().map(|s| s.to_string()).collect();
    if let Ok(out) = Command::new("nm")
        .args(["-D", "--undefined-only"])
        .arg(library)
        .output()
    {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(name) = line.split_whitespace().last() else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            let is_driver = name.starts_with("cu")
                && name.chars().nth(2).is_some_and(|c| c.is_ascii_uppercase());
            if is_driver && !symbols.iter().any(|s| s == name) {
                symbols.push(name.to_string());
            }
        }
    }
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let source = dir.join("libcuda_stub.c");
    let body: String = symbols
        .iter()
        .map(|s| format!("int {s}(void) {{ return 999; }}\n"))
        .collect();
    fs::write(
        &source,
        format!("/* Link-time stand-in for the NVIDIA driver; never loaded. */\n{body}"),
    )
    .map_err(|e| format!("writing {}: {e}", source.display()))?;
    let output = dir.join("libcuda.so.1");
    let compiler = cc::Build::new().cargo_metadata(false).get_compiler();
    let status = compiler
        .to_command()
        .args(["-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o"])
        .arg(&output)
        .arg(&source)
        .status()
        .map_err(|e| format!("compiling the driver stub: {e}"))?;
    if !status.success() {
        return Err(format!("compiling the driver stub failed ({status})"));
    }
    Ok(output)
}
