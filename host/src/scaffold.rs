//! `wsplug new NAME`: a handler crate that builds and whose test passes as
//! generated, with the SDK and the testkit of the wsplug checkout this
//! binary was built from as path dependencies.

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};

/// Which kind of handler to start from.
#[derive(Clone, Copy)]
pub enum Kind {
    /// A flow (the greeter).
    Flow,
    /// A sink and a source (server push).
    SinkSource,
}

/// Names cargo refuses for a package: Rust's keywords and the crates that
/// come with Rust.
#[rustfmt::skip]
const RESERVED_NAMES: &[&str] = &[
    "abstract", "alloc", "as", "async", "await", "become", "box", "break", "const", "continue", "core", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop",
    "macro", "match", "mod", "move", "mut", "override", "priv", "proc_macro", "proc-macro", "pub", "ref", "return",
    "self", "Self", "static", "std", "struct", "super", "test", "trait", "true", "try", "type", "typeof", "unsafe",
    "unsized", "use", "virtual", "where", "while", "yield",
];

/// Whether cargo takes `name` for a package.
fn check_name(name: &str) -> anyhow::Result<()> {
    if !name.starts_with(|c: char| c.is_ascii_alphabetic())
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("`{name}` is not a crate name: start with a letter, then use letters, digits, - and _");
    }
    if RESERVED_NAMES.contains(&name) {
        bail!("`{name}` is not a crate name: Rust reserves it");
    }
    Ok(())
}

/// The checkout this binary was built from: its SDK and testkit.
fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ is in the checkout").to_owned()
}

/// Creates the crate at `dir` (which must not exist); its name is the last
/// part of the path. `checkout_dir` overrides where the SDK and testkit are
/// found (a wsplug checkout). In the templates, `__NAME__`, `__LIB__`,
/// `__SDK__` and `__TESTKIT__` stand for the crate's name, its library's
/// name, and the two paths.
pub fn new_handler(dir: &Path, kind: Kind, checkout_dir: Option<&Path>) -> anyhow::Result<()> {
    let name = dir.file_name().and_then(|name| name.to_str()).context("the crate needs a name")?;
    check_name(name)?;
    if dir.exists() {
        bail!("{} exists already", dir.display());
    }
    let checkout = checkout_dir.map_or_else(checkout, Path::to_owned);
    let checkout = checkout.canonicalize().with_context(|| format!("no wsplug checkout at {}", checkout.display()))?;
    let (sdk, testkit) = (checkout.join("sdk"), checkout.join("testkit"));
    for crate_dir in [&sdk, &testkit] {
        if !crate_dir.join("Cargo.toml").is_file() {
            bail!("{} has no Cargo.toml: is {} a wsplug checkout?", crate_dir.display(), checkout.display());
        }
    }
    let fill = |template: &str| {
        template
            .replace("__NAME__", name)
            .replace("__LIB__", &name.replace('-', "_"))
            .replace("__SDK__", &sdk.display().to_string())
            .replace("__TESTKIT__", &testkit.display().to_string())
    };
    let (handler, test) = match kind {
        Kind::Flow => (include_str!("templates/flow.rs.txt"), include_str!("templates/test_flow.rs.txt")),
        Kind::SinkSource => {
            (include_str!("templates/sink_source.rs.txt"), include_str!("templates/test_sink_source.rs.txt"))
        }
    };
    let files = [
        ("Cargo.toml", include_str!("templates/Cargo.toml.txt")),
        (".cargo/config.toml", include_str!("templates/config.toml.txt")),
        (".gitignore", include_str!("templates/gitignore.txt")),
        ("src/lib.rs", handler),
        ("tests/handler.rs", test),
        ("tests/component/mod.rs", include_str!("templates/component.rs.txt")),
    ];
    for (file, template) in files {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().expect("a file in the crate"))
            .and_then(|()| std::fs::write(&path, fill(template)))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn crate_names_are_checked_as_cargo_would() {
        for good in ["hello", "chat-room", "ws_2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "123abc", "-x", "_x", "héllo", "a b", "test", "self", "std", "fn"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
