//! Finding an MLX install, or downloading the pinned official wheel into a
//! cache shared by all builds.

use sha2::{Digest, Sha256};
use std::env;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The MLX version this crate is written against.
pub const MLX_VERSION: &str = "0.32.4";

/// One pinned wheel.
struct Wheel {
    package: &'static str,
    file: &'static str,
    sha256: &'static str,
}

const CPU_WHEEL: Wheel = Wheel {
    package: "mlx-cpu",
    file: "mlx_cpu-0.32.4-py3-none-manylinux_2_35_x86_64.whl",
    sha256: "0e0a24fa2ce8b6b94d2e6a90604e8813aa8e29fcb918bb2aa01cfb6d133d8cee",
};

const CUDA_WHEEL: Wheel = Wheel {
    package: "mlx-cuda-13",
    file: "mlx_cuda_13-0.32.4-py3-none-manylinux_2_35_x86_64.whl",
    sha256: "94cb48fba73e5ee39467e51c35c51c691123359ca17bafd1a24cf92ad6732bee",
};

/// A usable MLX install: headers and the shared library.
pub struct Install {
    /// Directory holding `mlx/mlx.h`.
    pub include_dir: PathBuf,
    /// The `libmlx.so` file.
    pub library: PathBuf,
    /// The directory that relative RPATH entries of `libmlx.so` are resolved
    /// against twice up (`$ORIGIN/../..`): the wheel's site root, when MLX
    /// came from a wheel.
    pub site_root: Option<PathBuf>,
}

impl Install {
    /// An install prefix given by `MLX_DIR`.
    pub fn from_prefix(prefix: &Path) -> Result<Self, String> {
        let include_dir = prefix.join("include");
        let library = prefix.join("lib").join("libmlx.so");
        if !include_dir.join("mlx").join("mlx.h").is_file() || !library.is_file() {
            return Err(format!(
                "MLX_DIR={} is not an MLX install prefix: expected include/mlx/mlx.h and \
                 lib/libmlx.so under it.\nUnset MLX_DIR to let the build download MLX {MLX_VERSION}.",
                prefix.display()
            ));
        }
        let site_root = prefix.parent().map(Path::to_path_buf);
        Ok(Self {
            include_dir,
            library,
            site_root,
        })
    }
}

/// Returns the cached wheel install, downloading it first when the cache is cold.
pub fn provision(cuda: bool) -> Result<Install, String> {
    let wheel = if cuda { &CUDA_WHEEL } else { &CPU_WHEEL };
    if !cfg!(target_os = "linux") || env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("x86_64") {
        return Err(format!(
            "the pinned {} wheel is built for Linux x86_64 only.\n\
             On other platforms install MLX {MLX_VERSION} yourself and set MLX_DIR to its prefix.",
            wheel.package
        ));
    }
    if cuda && let Some(install) = python_installed_cuda()? {
        return Ok(install);
    }
    let cache = cache_dir()?;
    let target = cache.join(format!("{}-{MLX_VERSION}", wheel.package));
    let marker = target.join(".complete");
    if !marker.is_file() {
        download_and_unpack(wheel, &cache, &target, cuda)?;
    }
    Install::from_prefix(&target.join("mlx"))
}

fn cache_dir() -> Result<PathBuf, String> {
    if let Some(dir) = env::var_os("MLX_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("mlx-grpo"));
    }
    match env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("mlx-grpo")),
        None => Err("no cache directory: set MLX_CACHE_DIR (or HOME)".to_string()),
    }
}

fn python() -> PathBuf {
    env::var_os("MLX_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Uses an `mlx-cuda-13` of the pinned version that the user installed with pip.
fn python_installed_cuda() -> Result<Option<Install>, String> {
    let script = "import importlib.metadata as m, os, mlx\n\
                  v = m.version('mlx-cuda-13')\n\
                  print(v); print(os.path.dirname(mlx.__path__[0]) if hasattr(mlx, '__path__') else '')";
    let Ok(output) = Command::new(python()).args(["-c", script]).output() else {
        return Ok(None);
    };
    if !output.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let (Some(version), Some(site)) = (lines.next(), lines.next()) else {
        return Ok(None);
    };
    if version.trim() != MLX_VERSION {
        println!(
            "cargo:warning=installed mlx-cuda-13 is {version}, not {MLX_VERSION}: provisioning the pinned wheel"
        );
        return Ok(None);
    }
    Install::from_prefix(&Path::new(site.trim()).join("mlx")).map(Some)
}

fn download_and_unpack(
    wheel: &Wheel,
    cache: &Path,
    target: &Path,
    cuda: bool,
) -> Result<(), String> {
    fs::create_dir_all(cache).map_err(|e| format!("creating cache {}: {e}", cache.display()))?;
    // A private staging directory, renamed into place at the end: concurrent
    // builds never see a half-unpacked install.
    let staging = cache.join(format!(".staging-{}-{}", wheel.package, std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(|e| format!("creating {}: {e}", staging.display()))?;
    let download_dir = staging.join("download");

    let python = python();
    let pip_check = Command::new(&python)
        .args(["-m", "pip", "--version"])
        .output();
    if !matches!(&pip_check, Ok(out) if out.status.success()) {
        return Err(format!(
            "MLX is not cached yet and `{} -m pip` is not available to download it.\n\
             Install Python 3 with pip (e.g. `apt-get install python3-pip`), set MLX_PYTHON to a \
             Python that has pip, or set MLX_DIR to an existing MLX {MLX_VERSION} install.",
            python.display()
        ));
    }
    println!(
        "cargo:warning=downloading {}=={MLX_VERSION} into {} (once; later builds reuse it)",
        wheel.package,
        cache.display()
    );
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args([
            "--platform",
            "manylinux_2_35_x86_64",
            "--disable-pip-version-check",
        ])
        .arg("--dest")
        .arg(&download_dir)
        .arg(format!("{}=={MLX_VERSION}", wheel.package))
        .status()
        .map_err(|e| format!("running pip: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`pip download {}=={MLX_VERSION}` failed ({status}). Check network access to the \
             package index (PIP_INDEX_URL), or set MLX_DIR to an existing MLX install.",
            wheel.package
        ));
    }
    let wheel_path = download_dir.join(wheel.file);
    verify_sha256(&wheel_path, wheel.sha256)?;

    let unpacked = staging.join("site");
    if cuda {
        // The CUDA build needs NVIDIA's runtime wheels beside it (its RPATH
        // points at them), so let pip install the verified wheel with its
        // dependencies into a private target directory.
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&unpacked)
            .arg(&wheel_path)
            .status()
            .map_err(|e| format!("running pip install: {e}"))?;
        if !status.success() {
            return Err(format!(
                "`pip install --target` of {} failed ({status})",
                wheel.file
            ));
        }
    } else {
        let status = Command::new(&python)
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel_path)
            .arg(&unpacked)
            .status()
            .map_err(|e| format!("unpacking {}: {e}", wheel.file))?;
        if !status.success() {
            return Err(format!("unpacking {} failed ({status})", wheel.file));
        }
    }
    fs::write(unpacked.join(".complete"), MLX_VERSION)
        .map_err(|e| format!("writing cache marker: {e}"))?;
    if let Err(e) = fs::rename(&unpacked, target) {
        // Another build may have won the race; that is fine if its copy is complete.
        if !target.join(".complete").is_file() {
            return Err(format!(
                "moving {} into {}: {e}",
                unpacked.display(),
                target.display()
            ));
        }
    }
    let _ = fs::remove_dir_all(&staging);
    Ok(())
}

fn verify_sha256(path: &Path, expected: &str) -> Result<(), String> {
    let mut file = fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let actual: String = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    if actual != expected {
        return Err(format!(
            "sha256 mismatch for {}:\n  expected {expected}\n  actual   {actual}\n\
             The package index served a different file than the pinned one; refusing to use it.",
            path.display()
        ));
    }
    Ok(())
}
