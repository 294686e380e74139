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
