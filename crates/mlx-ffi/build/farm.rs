//! The link farm under `OUT_DIR`: how binaries find `libmlx.so` and which BLAS
//! it uses.
//!
//! Cargo cannot pass an rpath to crates that depend on this one indirectly, so
//! by default ([`LinkMode::Absolute`]) the build copies `libmlx.so` into the
//! farm without its `DT_SONAME` and hands the linker a one-line linker script
//! (`INPUT(/abs/path/libmlx.so)`). The linker then records the absolute path as
//! `DT_NEEDED`, and every executable that links MLX (this crate's tests, the
//! workspace's examples, a downstream crate's binaries) finds it with no
//! `LD_LIBRARY_PATH` and no build script of its own.
//!
//! BLAS: the CPU wheel's `libmlx.so` loads its reference BLAS through
//! `RPATH=$ORIGIN/../../mlx_cpu.libs`. The farm places the library at
//! `farm/mlx/lib/` and builds `farm/mlx_cpu.libs/` whose BLAS and LAPACK
//! entries point at the system OpenBLAS, so the reference BLAS is never loaded.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use crate::driver_stub;
use crate::provision::Install;

/// Which BLAS the CPU build of MLX uses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BlasChoice {
    /// OpenBLAS when found, else the wheel's reference BLAS with a warning.
    Auto,
    /// OpenBLAS, or fail.
    OpenBlas,
    /// The wheel's bundled reference BLAS.
    Bundled,
}

impl BlasChoice {
    pub fn from_env() -> Result<Self, String> {
        match env::var("MLX_BLAS").as_deref() {
            Err(_) | Ok("") | Ok("auto") => Ok(Self::Auto),
            Ok("openblas") => Ok(Self::OpenBlas),
            Ok("bundled") => Ok(Self::Bundled),
            Ok(other) => Err(format!(
                "MLX_BLAS={other} is not one of auto, openblas, bundled"
            )),
        }
    }
}

/// How executables find `libmlx.so`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Absolute `DT_NEEDED` path: works everywhere with no environment.
    Absolute,
    /// Plain `-lmlx` plus an rpath on this crate's own binaries; other
    /// binaries need `LD_LIBRARY_PATH`, which can then swap in another build
    /// of the same MLX version (e.g. the CUDA one on a GPU machine).
    Rpath,
}

impl LinkMode {
    pub fn from_env() -> Result<Self, String> {
        match env::var("MLX_LINK_MODE").as_deref() {
            Err(_) | Ok("") | Ok("absolute") => Ok(Self::Absolute),
            Ok("rpath") => Ok(Self::Rpath),
            Ok(other) => Err(format!(
                "MLX_LINK_MODE={other} is not one of absolute, rpath"
            )),
        }
    }
}

/// What the linker needs.
pub struct Linked {
    /// Directory passed with `-L`.
    pub search_dir: PathBuf,
    /// Directory of the `libmlx.so` that binaries load.
    pub lib_dir: PathBuf,
    /// One line for users: which BLAS was chosen.
    pub blas_description: String,
}

pub fn prepare(
    install: &Install,
    out_dir: &Path,
    blas: BlasChoice,
    mode: LinkMode,
) -> Result<Linked, String> {
    let farm = out_dir.join("mlx-farm");
    if farm.exists() {
        fs::remove_dir_all(&farm).map_err(|e| format!("clearing {}: {e}", farm.display()))?;
    }
    let lib_dir = farm.join("mlx").join("lib");
    mkdir(&lib_dir)?;
    // The CUDA build compiles kernels at run time and looks for the headers
    // it ships (`include/cccl`) next to the directory of `libmlx.so`.
    if install.include_dir.is_dir() {
        symlink(&install.include_dir, &farm.join("mlx").join("include"))?;
    }

    let openblas = match blas {
        BlasChoice::Bundled => None,
        BlasChoice::Auto | BlasChoice::OpenBlas => find_openblas(),
    };
    let blas_description = link_siblings(install, &farm, openblas.as_deref(), blas)?;

    // The CUDA library on a machine without the NVIDIA driver: link against
    // a stand-in `libcuda.so.1` (see `driver_stub`).
    let driver_stub =
        if driver_stub::needs_driver(&install.library) && !driver_stub::driver_installed() {
            println!(
                "cargo:warning=no NVIDIA driver (libcuda.so.1) here: linking the CUDA build of MLX \
             against a stub; the binaries need the driver where they run"
            );
            Some(driver_stub::build(
                &install.library,
                &farm.join("driver-stub"),
            )?)
        } else {
            None
        };
    let script = |library: &Path| -> Result<PathBuf, String> {
        let script_dir = farm.join("link");
        mkdir(&script_dir)?;
        let extra = driver_stub
            .as_ref()
            .map(|p| format!(" AS_NEEDED({})", p.display()))
            .unwrap_or_default();
        fs::write(
            script_dir.join("libmlx.so"),
            format!("INPUT({}{extra})\n", library.display()),
        )
        .map_err(|e| format!("writing the linker script: {e}"))?;
        Ok(script_dir)
    };

    let search_dir = match mode {
        LinkMode::Absolute => {
            let copy = lib_dir.join("libmlx.so");
            let mut bytes = fs::read(&install.library)
                .map_err(|e| format!("reading {}: {e}", install.library.display()))?;
            remove_soname(&mut bytes).map_err(|e| format!("{}: {e}", install.library.display()))?;
            fs::write(&copy, bytes).map_err(|e| format!("writing {}: {e}", copy.display()))?;
            script(&copy)?
        }
        LinkMode::Rpath => {
            let link = lib_dir.join("libmlx.so");
            symlink(&install.library, &link)?;
            // The library keeps its soname, so executables record plain
            // `libmlx.so` either way; the script only adds the stub.
            if driver_stub.is_some() {
                script(&link)?
            } else {
                lib_dir.clone()
            }
        }
    };
    Ok(Linked {
        search_dir,
        lib_dir,
        blas_description,
    })
}

/// Mirrors the wheel's sibling folders (`mlx_cpu.libs`, `nvidia`) next to the
/// farm's `mlx/`, so the library's `$ORIGIN`-relative RPATH still resolves.
fn link_siblings(
    install: &Install,
    farm: &Path,
    openblas: Option<&Path>,
    blas: BlasChoice,
) -> Result<String, String> {
    let mut description = String::from("MLX's own BLAS");
    let Some(site_root) = &install.site_root else {
        return Ok(description);
    };
    let Ok(entries) = fs::read_dir(site_root) else {
        return Ok(description);
    };
    let mut saw_reference_blas = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        let is_libs = name_str.ends_with(".libs") || name_str == "nvidia";
        if !is_libs {
            continue;
        }
        let source = entry.path();
        let dest = farm.join(&name);
        if name_str == "mlx_cpu.libs" {
            saw_reference_blas = true;
            mkdir(&dest)?;
            for lib in fs::read_dir(&source)
                .map_err(|e| format!("reading {}: {e}", source.display()))?
                .flatten()
            {
                let lib_name = lib.file_name();
                let lib_str = lib_name.to_string_lossy();
                let is_blas = lib_str.starts_with("libblas-") || lib_str.starts_with("liblapack-");
                match (is_blas, openblas) {
                    (true, Some(open)) => symlink(open, &dest.join(&lib_name))?,
                    _ => symlink(&lib.path(), &dest.join(&lib_name))?,
                }
            }
        } else {
            symlink(&source, &dest)?;
        }
    }
    if saw_reference_blas {
        match (openblas, blas) {
            (Some(path), _) => description = format!("OpenBLAS ({})", path.display()),
            (None, BlasChoice::OpenBlas) => {
                return Err("MLX_BLAS=openblas but libopenblas.so.0 was not found.\n\
                     Install it (`apt-get install libopenblas0-pthread`) or set MLX_OPENBLAS_LIB."
                    .to_string());
            }
            (None, BlasChoice::Auto) => {
                println!(
                    "cargo:warning=OpenBLAS not found: MLX will use the wheel's reference BLAS, \
                     about 30x slower for matmul. Install it with `apt-get install \
                     libopenblas0-pthread` (or set MLX_OPENBLAS_LIB), then rebuild."
                );
                description = "the wheel's reference BLAS (slow)".to_string();
            }
            (None, BlasChoice::Bundled) => {
                description = "the wheel's reference BLAS (MLX_BLAS=bundled)".to_string()
            }
        }
    }
    Ok(description)
}

fn find_openblas() -> Option<PathBuf> {
    if let Some(path) = env::var_os("MLX_OPENBLAS_LIB") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    const CANDIDATES: &[&str] = &[
        "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0",
        "/usr/lib64/libopenblas.so.0",
        "/usr/lib/libopenblas.so.0",
        "/usr/local/lib/libopenblas.so.0",
    ];
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .and_then(|path| fs::canonicalize(&path).ok().or(Some(path)))
}

/// Removes the `DT_SONAME` entry of a 64-bit little-endian ELF shared
/// library, so that linking it by path records that path.
fn remove_soname(elf: &mut [u8]) -> Result<(), String> {
    const DT_NULL: u64 = 0;
    const DT_SONAME: u64 = 14;
    const PT_DYNAMIC: u32 = 2;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".to_string());
    }
    let read_u16 = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]) as usize;
    let read_u32 =
        |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let read_u64 = |b: &[u8], at: usize| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(raw)
    };
    let phoff = read_u64(elf, 0x20) as usize;
    let phentsize = read_u16(elf, 0x36);
    let phnum = read_u16(elf, 0x38);
    let mut dynamic = None;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        if at + 56 > elf.len() {
            return Err("truncated program header table".to_string());
        }
        if read_u32(elf, at) == PT_DYNAMIC {
            dynamic = Some((
                read_u64(elf, at + 8) as usize,
                read_u64(elf, at + 32) as usize,
            ));
        }
    }
    let (offset, size) = dynamic.ok_or("no PT_DYNAMIC segment")?;
    if offset + size > elf.len() {
        return Err("truncated dynamic section".to_string());
    }
    let count = size / 16;
    let entry = |i: usize| offset + i * 16;
    let Some(soname_index) = (0..count).find(|&i| read_u64(elf, entry(i)) == DT_SONAME) else {
        return Ok(());
    };
    let end = (0..count)
        .find(|&i| read_u64(elf, entry(i)) == DT_NULL)
        .ok_or("dynamic section has no DT_NULL terminator")?;
    // Shift the entries after DT_SONAME (up to and including DT_NULL) one slot left.
    elf.copy_within(entry(soname_index + 1)..entry(end + 1), entry(soname_index));
    elf[entry(end)..entry(end + 1)].fill(0);
    Ok(())
}

fn mkdir(path: &Path) -> Result<(), String> {
    fs::create_dir_all(path).map_err(|e| format!("creating {}: {e}", path.display()))
}

fn symlink(source: &Path, dest: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(source, dest)
            .map_err(|e| format!("linking {} -> {}: {e}", dest.display(), source.display()))
    }
    #[cfg(not(unix))]
    {
        fs::copy(source, dest)
            .map(|_| ())
            .map_err(|e| format!("copying {} -> {}: {e}", source.display(), dest.display()))
    }
}
