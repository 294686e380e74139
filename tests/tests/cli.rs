//! The README's flow with the real binary: `wsplug serve` with two routes,
//! `wsplug talk` to the greeter; and a graceful stop on SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsplug_tests::{HANG_GUARD, example, receive, receive_text, test_guest, wsplug_binary};

/// Kills the server when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `wsplug serve` on a free port; returns it, the `ws://` URL of each
/// route (read from its log) and the rest of its log, line by line.
fn serve(routes: &[(&str, PathBuf)]) -> (Running, Vec<String>, mpsc::Receiver<String>) {
    let mut command = Command::new(wsplug_binary());
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    for (path, component) in routes {
        command.args(["--route", &format!("{path}={}", component.display())]);
    }
    let mut server = Running(command.stderr(Stdio::piped()).spawn().expect("cannot start wsplug serve"));
    // The server logs one `serving ws://...` line per route once it listens.
    let mut log = BufReader::new(server.0.stderr.take().unwrap());
    let mut urls = Vec::new();
    while urls.len() < routes.len() {
        let mut line = String::new();
        assert!(log.read_line(&mut line).unwrap() > 0, "wsplug serve exited; log so far: {urls:?}");
        if let Some(url) = line.split_whitespace().find(|word| word.starts_with("ws://")) {
            urls.push(url.to_owned());
        }
    }
    // Keep reading the log so that the server never blocks on it.
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in log.lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    (server, urls, lines)
}

#[test]
fn serve_two_routes_and_talk_to_the_greeter() {
    let (_server, urls, _log) = serve(&[("/greeter", example("greeter")), ("/ticker", example("ticker"))]);
    let greeter_url = urls.iter().find(|url| url.ends_with("/greeter")).expect("a greeter route");
    assert!(urls.iter().any(|url| url.ends_with("/ticker")), "{urls:?}");

    let mut talk = Command::new(wsplug_binary())
        .args(["talk", greeter_url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start wsplug talk");
    talk.stdin.take().unwrap().write_all(b"Peter\nJohn\n").unwrap();
    let output = talk.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("< Hello Peter!\n") && stdout.contains("< Hello John!\n"), "{stdout}");
}

#[tokio::test]
async fn sigterm_closes_connections_with_1001_and_exits_0() -> anyhow::Result<()> {
    let (mut server, urls, _log) = serve(&[("/greeter", example("greeter"))]);
    let (mut client, _) = tokio_tungstenite::connect_async(urls[0].as_str()).await?;
    futures_util::SinkExt::send(&mut client, Message::text("Peter")).await?;
    assert_eq!(receive_text(&mut client).await?, "Hello Peter!");

    let killed = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status()?;
    assert!(killed.success());
    match receive(&mut client).await? {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Away),
        other => anyhow::bail!("expected close 1001, got {other:?}"),
    }
    while receive(&mut client).await?.is_some() {}
    let status = tokio::task::spawn_blocking(move || server.0.wait()).await??;
    assert!(status.success(), "{status}");
    Ok(())
}

#[tokio::test]
async fn the_handler_gets_the_clients_close_frame_and_its_stdout_reaches_the_log() -> anyhow::Result<()> {
    let (_server, urls, log) = serve(&[("/info", test_guest("info"))]);
    let (mut client, _) = tokio_tungstenite::connect_async(urls[0].as_str()).await?;
    assert!(receive_text(&mut client).await?.starts_with("subprotocol="));
    client.close(Some(CloseFrame { code: CloseCode::Library(4000), reason: "bye".into() })).await?;
    while receive(&mut client).await?.is_some() {}

    let logged = tokio::task::spawn_blocking(move || {
        loop {
            let line = log.recv_timeout(HANG_GUARD).expect("the guest's line in the log");
            if line.contains("client closed with") {
                return line;
            }
        }
    })
    .await?;
    assert!(logged.contains(r#"client closed with 4000 "bye""#), "{logged}");
    assert!(
        logged.contains("connection=") && logged.contains(r#"path="/info""#) && logged.contains("stdout"),
        "{logged}"
    );
    Ok(())
}

#[tokio::test]
async fn a_chatty_guest_is_rate_limited_in_the_log() -> anyhow::Result<()> {
    let (_server, urls, log) = serve(&[("/info", test_guest("info"))]);
    let (mut client, _) = tokio_tungstenite::connect_async(urls[0].as_str()).await?;
    assert!(receive_text(&mut client).await?.starts_with("subprotocol="));
    futures_util::SinkExt::send(&mut client, Message::text("spam")).await?;
    assert_eq!(receive_text(&mut client).await?, "spam");
    // The dropped lines are reported with the next line let through, or
    // when the guest is gone.
    futures_util::SinkExt::send(&mut client, Message::text("spam")).await?;
    assert_eq!(receive_text(&mut client).await?, "spam");
    client.close(None).await?;
    while receive(&mut client).await?.is_some() {}

    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        while let Ok(line) = log.recv_timeout(std::time::Duration::from_secs(1)) {
            lines.push(line);
        }
        lines
    })
    .await?;
    let spam = lines.iter().filter(|line| line.contains("spam line")).count();
    assert!((100..=130).contains(&spam), "{spam} of 2000 lines logged");
    assert!(lines.iter().any(|line| line.contains("lines of guest output dropped")), "{lines:#?}");
    Ok(())
}
