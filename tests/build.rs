//! Builds every handler component the tests use, for wasm32-wasip2, with the
//! same cargo that builds the tests: the examples (`guest-examples/`, the
//! artifacts the README's demo uses too) and the test-only guests
//! (`tests/guests/`). Tests find them through `WSPLUG_*_COMPONENTS`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let tests = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = tests.parent().unwrap();
    for dir in ["sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let examples = build_workspace(&root.join("guest-examples"));
    let test_guests = build_workspace(&tests.join("guests"));
    println!("cargo:rustc-env=WSPLUG_EXAMPLE_COMPONENTS={}", examples.display());
    println!("cargo:rustc-env=WSPLUG_TEST_COMPONENTS={}", test_guests.display());
}

/// Builds a guest workspace in release mode and returns the directory that
/// holds its `.wasm` files.
fn build_workspace(workspace: &Path) -> PathBuf {
    // Watch the sources, not the workspace's own target directory.
    println!("cargo:rerun-if-changed={}", workspace.join("Cargo.toml").display());
    for entry in std::fs::read_dir(workspace).unwrap() {
        let path = entry.unwrap().path();
        if path.join("Cargo.toml").exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--workspace"])
        // The flags and target settings of the outer (host) build must not
        // leak into the guests' build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("cannot run cargo to build the guest components");
    assert!(
        status.success(),
        "building the guest components in {} failed; is the target installed? (rustup target add wasm32-wasip2)",
        workspace.display()
    );
    workspace.join("target/wasm32-wasip2/release")
}
