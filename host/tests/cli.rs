//! The `wsplug` command line's answers to bad input: each fails fast, before
//! any port is bound, with a message that names the problem.

use std::process::{Command, Output};

fn wsplug(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wsplug")).args(args).output().expect("cannot run wsplug")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_missing_component_file_is_a_startup_error_naming_it() {
    let output = wsplug(&["serve", "--listen", "127.0.0.1:0", "--route", "/greeter=missing/greeter.wasm"]);
    assert!(!output.status.success());
    let stderr = stderr(&output);
    assert!(stderr.contains("missing/greeter.wasm") && stderr.contains("cannot read component file"), "{stderr}");
    assert!(stderr.contains("route /greeter"), "{stderr}");
    assert!(!stderr.contains("serving"), "{stderr}");
}

#[test]
fn an_error_is_its_message_and_causes_even_with_rust_backtrace_set() {
    let output = Command::new(env!("CARGO_BIN_EXE_wsplug"))
        .args(["serve", "--listen", "127.0.0.1:0", "--route", "/greeter=missing/greeter.wasm"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("cannot run wsplug");
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr(&output);
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.first(), Some(&"error: route /greeter"), "{stderr}");
    assert!(lines[1..].iter().all(|line| line.starts_with("  caused by: ")), "{stderr}");
    assert!(stderr.contains("  caused by: cannot read component file missing/greeter.wasm"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
}

#[test]
fn a_static_directory_that_does_not_exist_is_a_startup_error() {
    let dir = std::env::temp_dir().join(format!("wsplug-cli-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("site.toml");
    std::fs::write(
        &config,
        "[[static]]\npath = \"/\"\ndir = \"web\"\n\n[[route]]\npath = \"/a\"\ncomponent = \"a.wasm\"\n",
    )
    .unwrap();
    let output = wsplug(&["serve", "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr(&output);
    assert!(stderr.contains("static path /") && stderr.contains("web is not a directory"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_that_is_not_a_component_is_a_startup_error() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = wsplug(&["serve", "--listen", "127.0.0.1:0", "--route", &format!("/x={manifest}")]);
    assert!(!output.status.success());
    let stderr = stderr(&output);
    assert!(stderr.contains("is not a WebAssembly component"), "{stderr}");
}

#[test]
fn a_malformed_route_is_a_usage_error() {
    for route in ["greeter.wasm", "greeter=greeter.wasm"] {
        let output = wsplug(&["serve", "--route", route]);
        assert_eq!(output.status.code(), Some(2), "clap's usage error");
        assert!(stderr(&output).contains("--route"), "{}", stderr(&output));
    }
}

#[test]
fn a_config_file_with_an_unknown_key_is_an_error_naming_key_and_line() {
    let dir = std::env::temp_dir().join(format!("wsplug-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bad.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\n[[route]]\npath = \"/a\"\ncomponent = \"a.wasm\"\nmax-mesage-size = 5\n",
    )
    .unwrap();
    let output = wsplug(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = stderr(&output);
    assert!(stderr.contains("bad.toml") && stderr.contains("line 5") && stderr.contains("max-mesage-size"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serving_without_any_route_is_an_error() {
    let output = wsplug(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("no routes"), "{}", stderr(&output));
}
