//! A crate outside this workspace that depends on `mlx-tensor` by path builds
//! and runs with no `LD_LIBRARY_PATH` and no build script of its own.
//!
//! The test writes a new Cargo package into a temporary directory, runs
//! `cargo run` on it with `LD_LIBRARY_PATH` removed from the environment,
//! checks what it prints, then runs the built binary directly (`cargo run`
//! itself may add directories to the loader's path; the direct run shows the
//! binary needs none). The package builds into `<target>/downstream`, so
//! repeated runs are incremental; the first run builds `mlx-ffi` and
//! `mlx-tensor` once more (about two minutes on two cores).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MAIN_RS: &str = r#"use mlx_tensor::{Array, Axes};

fn main() -> mlx_tensor::Result<()> {
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    let b = Array::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2])?;
    let c = a.matmul(&b)?;
    println!("matmul = {:?}", c.to_vec::<f32>()?);
    println!("sum = {}", c.sum(Axes::All, false)?.item::<f32>()?);
    println!("mlx = {}", mlx_tensor::device::mlx_version());
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    for path in maps.lines().filter_map(|l| l.split_whitespace().nth(5)) {
        if path.ends_with("/libmlx.so") {
            println!("libmlx = {path}");
            break;
        }
    }
    Ok(())
}
"#;

/// The workspace's target directory (`CARGO_TARGET_TMPDIR` is `<target>/tmp`).
fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

fn show(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn check_output(stdout: &str, full: &str) {
    assert!(stdout.contains("matmul = [4.0, 5.0, 10.0, 11.0]"), "{full}");
    assert!(stdout.contains("sum = 30"), "{full}");
    assert!(stdout.contains("mlx = 0.32.4"), "{full}");
    assert!(stdout.contains("libmlx = /"), "{full}");
}

#[test]
fn downstream_crate_runs_without_ld_library_path() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tensor = fs::canonicalize(workspace.join("crates").join("mlx-tensor")).unwrap();
    let package_dir = tempfile::Builder::new()
        .prefix("mlx-downstream-")
        .tempdir()
        .unwrap();
    let package = package_dir.path();
    fs::create_dir_all(package.join("src")).unwrap();
    fs::write(
        package.join("Cargo.toml"),
        format!(
            "[package]\nname = \"mlx-downstream-app\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dependencies]\nmlx-tensor = {{ path = {:?} }}\n\n\
             # Not a member of any enclosing workspace.\n[workspace]\n",
            tensor.display().to_string()
        ),
    )
    .unwrap();
    fs::write(package.join("src").join("main.rs"), MAIN_RS).unwrap();
    // The workspace's lock file pins the same dependency versions, so no
    // registry lookup is needed; Cargo drops the entries this package lacks.
    fs::copy(workspace.join("Cargo.lock"), package.join("Cargo.lock")).unwrap();

    let target = target_dir().join("downstream");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(&cargo)
        .args(["run", "--quiet"])
        .current_dir(package)
        .env_remove("LD_LIBRARY_PATH")
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cargo runs");
    let full = show(&output);
    assert!(output.status.success(), "cargo run failed:\n{full}");
    check_output(&String::from_utf8_lossy(&output.stdout), &full);

    // The binary itself, with no LD_LIBRARY_PATH at all.
    let binary = target.join("debug").join("mlx-downstream-app");
    let direct = Command::new(&binary)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("the binary starts");
    let full = show(&direct);
    assert!(
        direct.status.success(),
        "{} failed:\n{full}",
        binary.display()
    );
    check_output(&String::from_utf8_lossy(&direct.stdout), &full);
}
