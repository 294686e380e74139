//! The on-disk cache of compiled components, with the real binary: a first
//! start writes an entry, the next one reads it, an entry that is not what
//! the host wrote is compiled again (and rewritten), never trusted, and
//! `--no-cache` writes nothing.

use futures_util::SinkExt;
use std::path::{Path, PathBuf};
use tokio_tungstenite::tungstenite::Message;
use wsplug_tests::cli::{log_line, serve_config, serve_with};
use wsplug_tests::{example, receive_text};

/// A fresh, empty cache directory for one test.
fn cache_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wsplug-cache-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The compiled components in the cache `dir`: files named by a hash (the
/// cache's statistics, lock and temporary files have a dot in their names).
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.join("modules")];
    while let Some(dir) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&dir) else { continue };
        for entry in listing.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if !entry.file_name().to_string_lossy().contains('.') {
                found.push(path);
            }
        }
    }
    found
}

fn config(cache_dir: &Path) -> String {
    format!(
        "cache-dir = {:?}\n[[route]]\npath = \"/greeter\"\ncomponent = {:?}\n",
        cache_dir.display().to_string(),
        example("greeter").display().to_string()
    )
}

async fn greet(url: &str) -> anyhow::Result<()> {
    let (mut client, _) = tokio_tungstenite::connect_async(url).await?;
    client.send(Message::text("Peter")).await?;
    assert_eq!(receive_text(&mut client).await?, "Hello Peter!");
    Ok(())
}

#[tokio::test]
async fn a_compiled_component_is_cached_and_a_corrupt_entry_is_compiled_again() -> anyhow::Result<()> {
    let dir = cache_dir("corrupt");
    {
        let (_server, urls, log) = serve_config(&config(&dir));
        log_line(&log, &["greeter.wasm compiled in"]);
        greet(&urls[0]).await?;
    }
    let written = entries(&dir);
    assert_eq!(written.len(), 1, "{written:?}");
    let entry = &written[0];
    let good = std::fs::read(entry)?;
    let written_at = std::fs::metadata(entry)?.modified()?;

    // The next start reads it: compiling again would rewrite it.
    {
        let (_server, urls, log) = serve_config(&config(&dir));
        log_line(&log, &["greeter.wasm compiled in"]);
        greet(&urls[0]).await?;
    }
    assert_eq!(std::fs::metadata(entry)?.modified()?, written_at, "the entry was written again");

    // Not what this host wrote: it must be compiled again, not run.
    std::fs::write(entry, b"not a compiled component")?;
    {
        let (_server, urls, log) = serve_config(&config(&dir));
        log_line(&log, &["greeter.wasm compiled in"]);
        greet(&urls[0]).await?;
    }
    let rewritten = std::fs::read(entry)?;
    assert_ne!(rewritten, b"not a compiled component");
    assert_eq!(rewritten.len(), good.len());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn no_cache_writes_nothing() -> anyhow::Result<()> {
    let dir = cache_dir("off");
    let config_file = std::env::temp_dir().join(format!("wsplug-cache-test-{}-off.toml", std::process::id()));
    std::fs::write(&config_file, config(&dir))?;
    let args = ["--config".to_owned(), config_file.display().to_string(), "--no-cache".to_owned()];
    {
        let (_server, urls, _log) = serve_with(&args, 1);
        greet(&urls[0]).await?;
    }
    assert_eq!(entries(&dir), Vec::<PathBuf>::new());
    std::fs::remove_file(&config_file)?;
    Ok(())
}
