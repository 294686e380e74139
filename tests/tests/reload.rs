//! Hot reload with the real binary and real signals: on SIGHUP (and with
//! `--watch`, on a file change) new connections get the new handler while
//! open ones keep theirs; a broken component changes nothing; routes are
//! added and removed from the config file.

use futures_util::{SinkExt, StreamExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use tokio_tungstenite::tungstenite::Message;
use wsplug_tests::cli::{Running, log_line, serve_with};
use wsplug_tests::{Client, example, guard, js_greeter, receive_text};

/// A directory with a config file and a component of the test's own, which
/// the test rewrites.
struct Site {
    dir: PathBuf,
}

impl Site {
    fn new(name: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("wsplug-reload-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// Puts `example`'s component at `file` the way a deployment should:
    /// written beside it, then renamed into place.
    fn deploy(&self, example_name: &str, file: &str) -> anyhow::Result<()> {
        self.write(file, &std::fs::read(example(example_name))?)
    }

    fn write(&self, file: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let staged = self.dir.join(format!("{file}.new"));
        std::fs::write(&staged, bytes)?;
        std::fs::rename(staged, self.dir.join(file))?;
        Ok(())
    }

    /// Writes the config file: one route per `(path, file)`.
    fn configure(&self, routes: &[(&str, &str)]) -> anyhow::Result<PathBuf> {
        let text: String = routes
            .iter()
            .map(|(path, file)| format!("[[route]]\npath = \"{path}\"\ncomponent = \"{file}\"\n\n"))
            .collect();
        let config = self.dir.join("wsplug.toml");
        std::fs::write(&config, text)?;
        Ok(config)
    }

    fn serve(
        &self,
        config: &Path,
        extra: &[&str],
        routes: usize,
    ) -> (Running, Vec<String>, std::sync::mpsc::Receiver<String>) {
        let mut args = vec!["--config".to_owned(), config.display().to_string()];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        serve_with(&args, routes)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn hang_up(server: &Running) {
    let sent = Command::new("kill").args(["-HUP", &server.0.id().to_string()]).status().expect("kill runs");
    assert!(sent.success());
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    Ok(guard(tokio_tungstenite::connect_async(url)).await??.0)
}

async fn say(client: &mut Client, text: &str) -> anyhow::Result<String> {
    client.send(Message::text(text)).await?;
    receive_text(client).await
}

#[tokio::test]
async fn sighup_swaps_handlers_for_new_connections_only() -> anyhow::Result<()> {
    let site = Site::new("hup")?;
    site.deploy("greeter", "handler.wasm")?;
    let config = site.configure(&[("/h", "handler.wasm")])?;
    let (server, urls, log) = site.serve(&config, &[], 1);
    let url = &urls[0];
    let mut before = connect(url).await?;
    assert_eq!(say(&mut before, "Peter").await?, "Hello Peter!");

    site.deploy("echo", "handler.wasm")?;
    hang_up(&server);
    let reloaded = log_line(&log, &["reloaded the routes (SIGHUP)"]);
    assert!(reloaded.contains("replaced=[\"/h\"]"), "{reloaded}");
    let mut after = connect(url).await?;
    assert_eq!(say(&mut after, "Peter").await?, "Peter", "a new connection gets the new handler");
    assert_eq!(say(&mut before, "John").await?, "Hello John!", "an open one keeps its own");

    // A broken component is refused as at startup; service goes on.
    site.write("handler.wasm", b"not a component")?;
    hang_up(&server);
    let refused = log_line(&log, &["reload refused (SIGHUP)"]);
    assert!(refused.contains("is not a WebAssembly component"), "{refused}");
    assert_eq!(say(&mut connect(url).await?, "still").await?, "still");
    assert_eq!(say(&mut after, "on").await?, "on");

    // Routes come and go with the config file.
    site.deploy("echo", "handler.wasm")?;
    site.deploy("greeter", "greeter.wasm")?;
    site.configure(&[("/g", "greeter.wasm")])?;
    hang_up(&server);
    let reloaded = log_line(&log, &["reloaded the routes (SIGHUP)"]);
    assert!(reloaded.contains("added=[\"/g\"]") && reloaded.contains("removed=[\"/h\"]"), "{reloaded}");
    let greeter_url = url.replace("/h", "/g");
    assert_eq!(say(&mut connect(&greeter_url).await?, "Mary").await?, "Hello Mary!");
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        other => anyhow::bail!("expected 404 for a removed route, got {other:?}"),
    }
    assert_eq!(say(&mut before, "still here").await?, "Hello still here!", "no connection was dropped");

    // A host-wide setting is read at startup only: the reload says so.
    std::fs::write(&config, format!("max-connections = 500\n{}", std::fs::read_to_string(&config)?))?;
    hang_up(&server);
    let warned = log_line(&log, &["host-wide settings"]);
    assert!(warned.contains("takes effect at the next start"), "{warned}");
    Ok(())
}

#[tokio::test]
async fn with_watch_a_changed_component_is_reloaded_by_itself() -> anyhow::Result<()> {
    let site = Site::new("watch")?;
    site.deploy("greeter", "handler.wasm")?;
    let config = site.configure(&[("/h", "handler.wasm")])?;
    let (_server, urls, log) = site.serve(&config, &["--watch"], 1);
    assert_eq!(say(&mut connect(&urls[0]).await?, "Peter").await?, "Hello Peter!");
    site.deploy("echo", "handler.wasm")?;
    log_line(&log, &["reloaded the routes (a watched file changed)", "replaced=[\"/h\"]"]);
    assert_eq!(say(&mut connect(&urls[0]).await?, "Peter").await?, "Peter");
    Ok(())
}

#[tokio::test]
async fn a_replaced_route_goes_on_counting_its_open_connections_against_its_cap() -> anyhow::Result<()> {
    let site = Site::new("cap")?;
    site.deploy("greeter", "handler.wasm")?;
    let config = site.dir.join("wsplug.toml");
    std::fs::write(&config, "[[route]]\npath = \"/h\"\ncomponent = \"handler.wasm\"\nmax-connections = 1\n")?;
    let (_server, urls, log) = site.serve(&config, &["--watch"], 1);
    let mut open = connect(&urls[0]).await?;
    assert_eq!(say(&mut open, "Peter").await?, "Hello Peter!");
    site.deploy("echo", "handler.wasm")?;
    log_line(&log, &["reloaded the routes (a watched file changed)", "replaced=[\"/h\"]"]);
    // The connection open before the reload still holds the route's one place.
    match tokio_tungstenite::connect_async(urls[0].as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => anyhow::bail!("expected 503, got {:?}", other.map(|_| "a connection")),
    }
    open.close(None).await?;
    while guard(open.next()).await?.is_some() {}
    // Its place is free once the host has seen it go.
    let mut next = guard(async {
        loop {
            match tokio_tungstenite::connect_async(urls[0].as_str()).await {
                Ok((client, _)) => return anyhow::Ok(client),
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) if response.status() == 503 => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(err) => return Err(err.into()),
            }
        }
    })
    .await??;
    assert_eq!(say(&mut next, "Peter").await?, "Peter");
    Ok(())
}

/// A pool sized for components with one memory each (which is what lets
/// 10,000 connections have 4 GiB slots) refuses a reloaded component with
/// two (a JavaScript handler), saying why; the running routes go on.
#[tokio::test]
async fn a_reloaded_component_that_does_not_fit_the_instance_pool_is_refused() -> anyhow::Result<()> {
    let site = Site::new("pool")?;
    site.deploy("echo", "handler.wasm")?;
    let config = site.configure(&[("/h", "handler.wasm")])?;
    let routes = std::fs::read_to_string(&config)?;
    std::fs::write(&config, format!("instance-pool = true\nmax-connections = 10000\n{routes}"))?;
    let (server, urls, log) = site.serve(&config, &[], 1);
    assert_eq!(say(&mut connect(&urls[0]).await?, "Peter").await?, "Peter");

    site.write("handler.wasm", &std::fs::read(js_greeter())?)?;
    hang_up(&server);
    let refused = log_line(&log, &["reload refused (SIGHUP)"]);
    assert!(refused.contains("does not fit the instance pool"), "{refused}");
    assert!(refused.contains("2 Wasm linear memories"), "{refused}");
    assert_eq!(say(&mut connect(&urls[0]).await?, "still").await?, "still");
    Ok(())
}
