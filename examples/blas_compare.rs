//! f32 matmul throughput with the BLAS this binary was built with, against
//! the MLX wheel's stock reference BLAS, in one run.
//!
//! ```text
//! cargo run --release --example blas_compare [-- --n 1024 --seconds 2]
//! ```
//!
//! The parent process measures with the BLAS chosen at build time
//! ([`mlx_tensor::BLAS`]: OpenBLAS by default, the reference BLAS with
//! `MLX_BLAS=bundled`). It then runs itself again with `--child` and
//! `LD_PRELOAD` of the wheel's own `libblas-*.so` and `liblapack-*.so` (from
//! `mlx_cpu.libs` in the MLX cache, or `MLX_REFERENCE_BLAS_DIR`): the loader
//! takes preloaded libraries first, so `libmlx.so`'s BLAS and LAPACK
//! dependencies resolve to the stock ones. Each process reports the BLAS
//! libraries mapped into it (`/proc/self/maps`), and the parent checks that
//! the child really runs the stock library before printing the ratio.

use std::env;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use mlx_grpo_workspace::cli;
use mlx_tensor::{Array, Dtype, random};

/// f32 matmul throughput with the BLAS this binary was built with, against
/// the MLX wheel's stock reference BLAS.
#[derive(Parser, Debug)]
#[command(name = "blas_compare")]
struct Options {
    /// Matrix size
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=16384), default_value_t = 1024)]
    n: i32,
    /// Minimum measuring time per BLAS, in seconds
    #[arg(long, value_parser = cli::positive, default_value_t = 2.0)]
    seconds: f64,
    /// Measure only and print the result (the run with the stock BLAS preloaded)
    #[arg(long, hide = true)]
    child: bool,
}

/// Throughput of `n × n` f32 matmuls: (best, median) GFLOP/s.
fn measure(n: i32, seconds: f64) -> Result<(f64, f64), Box<dyn Error>> {
    let key = random::key(0)?;
    let a = random::normal(&[n, n], Dtype::F32, 0.0, 1.0, Some(&key))?;
    let b = random::normal(&[n, n], Dtype::F32, 0.0, 1.0, Some(&random::key(1)?))?;
    mlx_tensor::eval(&[&a, &b])?;
    let flops = 2.0 * f64::from(n).powi(3);
    let run = |a: &Array, b: &Array| -> Result<Duration, Box<dyn Error>> {
        let start = Instant::now();
        a.matmul(b)?.eval()?;
        Ok(start.elapsed())
    };
    run(&a, &b)?; // warm-up: thread pools, allocator
    let mut times = Vec::new();
    let budget = Instant::now();
    while times.len() < 3 || budget.elapsed().as_secs_f64() < seconds {
        times.push(run(&a, &b)?.as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let best = flops / times[0] / 1e9;
    let median = flops / times[times.len() / 2] / 1e9;
    Ok((best, median))
}

/// The BLAS and LAPACK libraries mapped into this process.
fn mapped_blas() -> Vec<String> {
    let maps = fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut libs: Vec<String> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| {
            let name = Path::new(path)
                .file_name()
                .map(|f| f.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            let is_lib = name.starts_with("lib") && name.contains(".so");
            is_lib && (name.contains("blas") || name.contains("lapack"))
        })
        .map(str::to_string)
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

/// The folder of the wheel's stock BLAS: `MLX_REFERENCE_BLAS_DIR`, else
/// `mlx_cpu.libs` in the MLX cache (`MLX_CACHE_DIR`, `$XDG_CACHE_HOME/mlx-grpo`
/// or `~/.cache/mlx-grpo`).
fn reference_blas_dir() -> Result<PathBuf, Box<dyn Error>> {
    if let Some(dir) = env::var_os("MLX_REFERENCE_BLAS_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let cache = env::var_os("MLX_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("mlx-grpo")))
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("mlx-grpo")))
        .ok_or("cannot locate the MLX cache: set MLX_CACHE_DIR or MLX_REFERENCE_BLAS_DIR")?;
    let dir = cache
        .join(format!("mlx-cpu-{}", mlx_ffi::MLX_VERSION))
        .join("mlx_cpu.libs");
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(format!(
            "{} does not exist: set MLX_REFERENCE_BLAS_DIR to the wheel's mlx_cpu.libs",
            dir.display()
        )
        .into())
    }
}

/// The library in `dir` whose name starts with `prefix`.
fn find_lib(dir: &Path, prefix: &str) -> Result<PathBuf, Box<dyn Error>> {
    fs::read_dir(dir)
        .map_err(cli::at_path("reading", dir))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with(prefix))
        })
        .ok_or_else(|| format!("no {prefix}*.so in {}", dir.display()).into())
}

/// Runs this binary with `--child` and the stock BLAS preloaded; returns its
/// (best, median) GFLOP/s and mapped BLAS libraries.
fn measure_in_child(
    opts: &Options,
    blas: &Path,
    lapack: &Path,
) -> Result<(f64, f64, Vec<String>), Box<dyn Error>> {
    let exe = env::current_exe()?;
    let output = Command::new(&exe)
        .args([
            "--child",
            "--n",
            &opts.n.to_string(),
            "--seconds",
            &opts.seconds.to_string(),
        ])
        .env(
            "LD_PRELOAD",
            format!("{} {}", blas.display(), lapack.display()),
        )
        .output()
        .map_err(cli::at_path("running", &exe))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the child failed ({}):\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let mut gflops = None;
    let mut libs = Vec::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("gflops ") {
            let mut parts = rest.split_whitespace().map(str::parse::<f64>);
            if let (Some(Ok(best)), Some(Ok(median))) = (parts.next(), parts.next()) {
                gflops = Some((best, median));
            }
        } else if let Some(lib) = line.strip_prefix("mapped ") {
            libs.push(lib.to_string());
        }
    }
    let (best, median) =
        gflops.ok_or_else(|| format!("no result in the child's output:\n{stdout}"))?;
    Ok((best, median, libs))
}

fn main() {
    let opts: Options = cli::parse();
    cli::exit_on_error(|| run(&opts));
}

fn run(opts: &Options) -> Result<(), Box<dyn Error>> {
    if opts.child {
        let (best, median) = measure(opts.n, opts.seconds)?;
        println!("gflops {best} {median}");
        for lib in mapped_blas() {
            println!("mapped {lib}");
        }
        return Ok(());
    }

    let dir = reference_blas_dir()?;
    let blas = fs::canonicalize(find_lib(&dir, "libblas-")?)?;
    let lapack = fs::canonicalize(find_lib(&dir, "liblapack-")?)?;
    println!(
        "f32 {n}x{n} matmul, MLX {}, at least {}s per measurement",
        mlx_tensor::device::mlx_version(),
        opts.seconds,
        n = opts.n
    );
    let (best, median) = measure(opts.n, opts.seconds)?;
    let own_libs = mapped_blas();
    let (ref_best, ref_median, child_libs) = measure_in_child(opts, &blas, &lapack)?;

    let blas_str = blas.display().to_string();
    if !child_libs.contains(&blas_str) {
        return Err(format!("the child did not map {blas_str} (mapped: {child_libs:?}); the comparison would be meaningless").into());
    }
    if child_libs.iter().any(|l| l.contains("openblas")) {
        println!("note: the child also maps OpenBLAS: {child_libs:?}");
    }

    println!();
    println!("| BLAS | GFLOP/s best | GFLOP/s median | libraries mapped |");
    println!("|---|---|---|---|");
    println!(
        "| built with: {} | {best:.1} | {median:.1} | {} |",
        mlx_tensor::BLAS,
        own_libs.join(", ")
    );
    println!(
        "| wheel's stock BLAS (child, LD_PRELOAD) | {ref_best:.1} | {ref_median:.1} | {} |",
        child_libs.join(", ")
    );
    println!();
    println!(
        "ratio (built / stock): {:.1}x best, {:.1}x median",
        best / ref_best,
        median / ref_median
    );
    Ok(())
}
