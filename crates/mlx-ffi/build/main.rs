//! Build script of `mlx-ffi`: finds or provisions MLX 0.32.4, compiles the C++
//! side of the bridge and tells Cargo how to link it.
//!
//! Knobs (each one re-runs this script when it changes):
//!
//! | variable | meaning |
//! |---|---|
//! | `MLX_DIR` | an MLX install prefix (`include/`, `lib/libmlx.so`); wins when set |
//! | `MLX_CACHE_DIR` | where downloaded wheels are unpacked (default `$XDG_CACHE_HOME/mlx-grpo` or `~/.cache/mlx-grpo`) |
//! | `MLX_PYTHON` | the Python used to run `pip` (default `python3`) |
//! | `MLX_BLAS` | `auto` (default: OpenBLAS when found), `openblas` (required) or `bundled` |
//! | `MLX_OPENBLAS_LIB` | path of `libopenblas.so.0` when it is not in a standard place |
//! | `MLX_LINK_MODE` | `absolute` (default: binaries find MLX with no environment) or `rpath` (lets `LD_LIBRARY_PATH` swap in another `libmlx.so`) |

mod driver_stub;
mod farm;
mod provision;

use std::env;
use std::path::{Path, PathBuf};

/// Every environment variable this script reads.
const KNOBS: &[&str] = &[
    "MLX_DIR",
    "MLX_CACHE_DIR",
    "MLX_PYTHON",
    "MLX_BLAS",
    "MLX_OPENBLAS_LIB",
    "MLX_LINK_MODE",
    "DOCS_RS",
    "XDG_CACHE_HOME",
    "HOME",
    "PIP_INDEX_URL",
    "CXX",
];

/// C++ sources of the bridge, relative to the package root.
const CPP_SOURCES: &[&str] = &[
    "cpp/array.cc",
    "cpp/ops.cc",
    "cpp/fast.cc",
    "cpp/random.cc",
    "cpp/transforms.cc",
    "cpp/io.cc",
    "cpp/runtime.cc",
    "cpp/distributed.cc",
];

/// The CUDA build's kernels and direct copies (feature `cuda`).
const CUDA_SOURCES: &[&str] = &[
    "cpp/cuda/transfer.cc",
    "cpp/cuda/matvec.cc",
    "cpp/cuda/norm_rope.cc",
];

/// The CPU build's stand-ins for [`CUDA_SOURCES`]: nothing applies.
const CPU_SOURCES: &[&str] = &["cpp/no_cuda.cc"];

fn main() {
    for knob in KNOBS {
        println!("cargo:rerun-if-env-changed={knob}");
    }
    println!("cargo:rerun-if-changed=src/bridge.rs");
    println!("cargo:rerun-if-changed=cpp");
    println!("cargo:rerun-if-changed=build");

    if env::var_os("CARGO_FEATURE_DOCS_ONLY").is_some() || env::var_os("DOCS_RS").is_some() {
        // Documentation builds need neither MLX nor a C++ compiler.
        return;
    }
    if let Err(message) = run() {
        // A build script reports failure by exiting non-zero; the message is what
        // the user sees, so it says what to do.
        eprintln!("\nerror: mlx-ffi could not set up MLX 0.32.4:\n\n{message}\n");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
    let cuda = env::var_os("CARGO_FEATURE_CUDA").is_some();

    let install = match env::var_os("MLX_DIR") {
        Some(dir) => provision::Install::from_prefix(Path::new(&dir))?,
        None => provision::provision(cuda)?,
    };

    let blas = farm::BlasChoice::from_env()?;
    let link_mode = farm::LinkMode::from_env()?;
    let linked = farm::prepare(&install, &out_dir, blas, link_mode)?;

    compile_bridge(&install.include_dir, cuda)?;

    println!(
        "cargo:rustc-link-search=native={}",
        linked.search_dir.display()
    );
    println!("cargo:rustc-link-lib=dylib=mlx");
    // Only this package's own tests see link args; other crates rely on the
    // absolute DT_NEEDED entry (see `farm`) or read `DEP_MLX_LIBDIR`.
    println!(
        "cargo:rustc-link-arg=-Wl,-rpath,{}",
        linked.lib_dir.display()
    );
    println!("cargo:libdir={}", linked.lib_dir.display());
    println!("cargo:include={}", install.include_dir.display());
    println!("cargo:version=0.32.4");
    println!(
        "cargo:rustc-env=MLX_FFI_LIB_DIR={}",
        linked.lib_dir.display()
    );
    println!(
        "cargo:rustc-env=MLX_FFI_BLAS={}",
        linked.blas_description.replace('\n', " ")
    );
    Ok(())
}

fn compile_bridge(include_dir: &Path, cuda: bool) -> Result<(), String> {
    let compiler = cc::Build::new().cpp(true).get_compiler();
    let path = compiler.path().to_path_buf();
    if which(&path).is_none() {
        return Err(format!(
            "no C++ compiler found (looked for `{}`).\n\
             Install a C++20 compiler, e.g. `apt-get install g++` (GCC 11 or newer), \
             or point CXX at one.",
            path.display()
        ));
    }
    let backend = if cuda { CUDA_SOURCES } else { CPU_SOURCES };
    let sources: Vec<&str> = CPP_SOURCES.iter().chain(backend).copied().collect();
    for source in &sources {
        println!("cargo:rerun-if-changed={source}");
    }
    let mut build = cxx_build::bridge("src/bridge.rs");
    build
        .files(&sources)
        .include("cpp")
        .include(include_dir)
        .std("c++20")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .flag_if_supported("-Wno-missing-field-initializers");
    build.try_compile("mlxbridge").map_err(|e| {
        format!(
            "compiling the C++ bridge failed: {e}\n\
             The bridge needs a C++20 compiler (GCC 11+ or Clang 14+) and glibc 2.35+."
        )
    })
}

/// Finds an executable on `PATH` (or checks an explicit path).
pub(crate) fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let paths = env::var_os("PATH")?;
    env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
