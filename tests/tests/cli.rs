//! The README's flow with the real binary: `wsplug serve` with two routes,
//! `wsplug talk` to the greeter; and a graceful stop on SIGTERM.

use futures_util::{SinkExt, StreamExt};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsplug_tests::cli::{log_line, serve, serve_config, talk};
use wsplug_tests::{RawClient, example, guard, receive, receive_text, resident_bytes, test_guest, wsplug_binary};

#[test]
fn serve_two_routes_and_talk_to_the_greeter() {
    let (_server, urls, _log) = serve(&[("/greeter", example("greeter")), ("/ticker", example("ticker"))]);
    let greeter_url = urls.iter().find(|url| url.ends_with("/greeter")).expect("a greeter route");
    assert!(urls.iter().any(|url| url.ends_with("/ticker")), "{urls:?}");

    let (success, stdout, stderr) = talk(&[greeter_url], b"Peter\nJohn\n");
    assert!(success, "{stderr}");
    assert!(stdout.contains("< Hello Peter!\n") && stdout.contains("< Hello John!\n"), "{stdout}");
}

#[test]
fn talk_says_why_the_server_refused_or_closed() {
    let (_server, urls, _log) = serve(&[("/trap", test_guest("trap"))]);
    let trap_url = &urls[0];

    // A refusal: the status and the body that says why, each cause once.
    let unknown = trap_url.replace("/trap", "/nothing-here");
    let (success, _, stderr) = talk(&[&unknown], b"");
    assert!(!success);
    assert!(stderr.contains("the server answered 404 Not Found: Unknown resource!"), "{stderr}");
    let (success, _, stderr) = talk(&["--ca", "ca.pem", trap_url], b"");
    assert!(!success && stderr.contains("--ca is for wss:// URLs"), "{stderr}");
    let refused = talk(&["ws://127.0.0.1:1/"], b"").2;
    assert_eq!(refused.matches("Connection refused").count(), 1, "{refused}");

    // A close for a failure is a failure of `talk`.
    let (success, stdout, stderr) = talk(&[trap_url], b"hi\ntrap\n");
    assert!(stdout.contains("< hi\n") && stdout.contains("closed by the server: 1011"), "{stdout}");
    assert!(!success && stderr.contains("closed the connection with 1011"), "{stderr}");
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

    let logged = log_line(&log, &["client closed with"]);
    assert!(logged.contains(r#"client closed with 4000 "bye""#), "{logged}");
    assert!(
        logged.contains("connection=") && logged.contains(r#"path="/info""#) && logged.contains("stdout"),
        "{logged}"
    );

    // A close frame without a code is not a dropped connection: 1005.
    let (mut client, _) = tokio_tungstenite::connect_async(urls[0].as_str()).await?;
    assert!(receive_text(&mut client).await?.starts_with("subprotocol="));
    client.close(None).await?;
    while receive(&mut client).await?.is_some() {}
    let logged = log_line(&log, &["client closed with"]);
    assert!(logged.contains(r#"client closed with 1005 """#), "{logged}");
    Ok(())
}

#[tokio::test]
async fn a_shared_instances_log_lines_name_the_instance_not_a_connection() -> anyhow::Result<()> {
    let config = format!(
        "listen = \"127.0.0.1:0\"\n[[route]]\npath = \"/info\"\ncomponent = \"{}\"\ninstance = \"shared\"\n",
        test_guest("info").display()
    );
    let (_server, urls, log) = serve_config(&config);
    let (mut client, _) = tokio_tungstenite::connect_async(urls[0].as_str()).await?;
    assert!(receive_text(&mut client).await?.starts_with("subprotocol="));
    client.close(Some(CloseFrame { code: CloseCode::Library(4000), reason: "bye".into() })).await?;
    while receive(&mut client).await?.is_some() {}

    let logged = log_line(&log, &["client closed with"]);
    assert!(logged.contains("instance=") && !logged.contains("connection="), "{logged}");
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

#[tokio::test]
async fn a_guest_sees_a_connection_lost_in_the_middle_of_a_message_as_1006() -> anyhow::Result<()> {
    let (_server, urls, log) = serve(&[("/info", test_guest("info"))]);
    let address = urls[0].trim_start_matches("ws://").split('/').next().unwrap_or_default().parse()?;
    let mut client = RawClient::connect(address, "/info").await?;
    assert!(String::from_utf8(client.read_frame().await?.payload)?.starts_with("subprotocol="));
    // The first fragment of a text message, then a TCP reset.
    client.send_frame(false, 1, b"half a mess").await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    client.reset()?;

    let logged = log_line(&log, &["wsplug::guest"]);
    assert!(logged.contains(r#"client closed with 1006 "connection lost in the middle of a message""#), "{logged}");
    Ok(())
}

#[tokio::test]
async fn a_100_mib_message_streams_through_the_greeter_in_a_few_mib_of_host_memory() -> anyhow::Result<()> {
    const SIZE: usize = 100 << 20;
    let (server, urls, _log) = serve_config(&format!(
        "[[route]]\npath = \"/greeter\"\ncomponent = {:?}\nmax-message-size = {SIZE}\nmax-frame-size = {SIZE}\n",
        example("greeter")
    ));
    let host = server.0.id().to_string();
    let unlimited = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
    let (client, _) = tokio_tungstenite::connect_async_with_config(urls[0].as_str(), Some(unlimited), false).await?;
    let (mut sink, mut stream) = client.split();
    let before = resident_bytes(&host);

    // Sample the host's memory while the message passes through.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let (done, host) = (done.clone(), host.clone());
        move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(resident_bytes(&host));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        }
    });
    // One frame of 100 MiB, read back while it is being sent.
    let send = async { sink.send(Message::text("a".repeat(SIZE))).await };
    let (sent, reply) = tokio::join!(send, guard(stream.next()));
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().expect("the sampler");
    sent?;
    let Some(Ok(Message::Text(reply))) = reply? else { anyhow::bail!("no text reply") };
    assert_eq!(reply.len(), "Hello !".len() + SIZE);
    assert!(reply.starts_with("Hello aaa") && reply.ends_with("aaa!"));
    let growth = peak.saturating_sub(before);
    assert!(growth < 16 << 20, "the host grew by {} MiB for a 100 MiB message", growth >> 20);
    Ok(())
}

#[tokio::test]
async fn hostile_guests_close_only_their_own_connections_and_are_logged_with_their_cause() -> anyhow::Result<()> {
    let routes = [
        ("/greeter", example("greeter")),
        ("/trap", test_guest("trap")),
        ("/hog", test_guest("hog")),
        ("/glutton", test_guest("glutton")),
        ("/stepwise", test_guest("stepwise")),
        ("/crash", test_guest("crash-source")),
    ];
    let (server, urls, log) = serve(&routes);
    let host = server.0.id().to_string();
    let url = |path: &str| urls.iter().find(|url| url.ends_with(path)).expect("a served route").clone();
    let (mut greeter, _) = tokio_tungstenite::connect_async(url("/greeter")).await?;
    let before = resident_bytes(&host);

    // Each hostile guest, the message that sets it off, and what its
    // failure is logged as.
    let cases = [
        ("/trap", "trap", "unreachable"),
        ("/hog", "spin", "cpu-budget"),
        ("/glutton", "eat", "growing memory"),
        ("/stepwise", "boom", "unreachable"),
        ("/crash", "still sending", "unreachable"),
    ];
    for (path, message, cause) in cases {
        let (mut client, _) = tokio_tungstenite::connect_async(url(path)).await?;
        client.send(Message::text(message)).await?;
        let close = loop {
            match receive(&mut client).await? {
                Some(Message::Close(frame)) => break frame,
                Some(_) => continue,
                None => anyhow::bail!("{path}: the connection ended without a close frame"),
            }
        };
        assert_eq!(close.map(|frame| u16::from(frame.code)), Some(1011), "{path}");
        let line = log_line(&log, &["handler failed", &format!("path=\"{path}\"")]);
        assert!(line.contains("connection=") && line.contains(cause), "{path}: {line}");
        assert!(!line.contains("backtrace"), "one line, not a backtrace: {line}");
        // The greeter, on the same host, is served all along.
        greeter.send(Message::text(path)).await?;
        assert_eq!(receive_text(&mut greeter).await?, format!("Hello {path}!"));
    }
    let growth = resident_bytes(&host).saturating_sub(before);
    assert!(growth < 64 << 20, "the host grew by {} MiB", growth >> 20);
    Ok(())
}

#[tokio::test]
async fn a_guest_that_never_writes_is_closed_as_idle_and_logged() -> anyhow::Result<()> {
    let (_server, urls, log) = serve_config(&format!(
        "[[route]]\npath = \"/deaf\"\ncomponent = {:?}\nidle-timeout = 0.3\n",
        test_guest("deaf")
    ));
    let (mut client, _) = tokio_tungstenite::connect_async(urls[0].as_str()).await?;
    match receive(&mut client).await? {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Away),
        other => anyhow::bail!("expected close 1001, got {other:?}"),
    }
    let line = log_line(&log, &["closing"]);
    assert!(line.contains(r#"path="/deaf""#) && line.contains("code=1001") && line.contains("idle timeout"), "{line}");
    Ok(())
}

#[test]
fn bad_arguments_and_unwritable_output_get_an_exit_code_and_a_message_never_a_panic() {
    let no_panic = |stderr: &str| assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    // A full disk is an error.
    let full = std::fs::File::create("/dev/full").expect("/dev/full");
    let output = Command::new(wsplug_binary())
        .env("RUST_BACKTRACE", "1")
        .arg("check")
        .arg(example("echo"))
        .stdout(full)
        .output()
        .expect("wsplug runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write to standard output"), "{stderr}");
    no_panic(&stderr);

    // A reader that has read enough (`| head -1`) ends `talk` quietly.
    let (_server, urls, _log) = serve(&[("/ticker", example("ticker"))]);
    let mut talking = Command::new(wsplug_binary())
        .env("RUST_BACKTRACE", "1")
        .args(["talk", &format!("{}?interval_ms=10", urls[0])])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start wsplug talk");
    let mut stdout = talking.stdout.take().unwrap();
    let mut first = [0; 8];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let output = talking.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    no_panic(&stderr);

    // A malformed --route is a usage error.
    for route in ["greeter.wasm", "g=greeter.wasm", "/g="] {
        let output = Command::new(wsplug_binary()).args(["serve", "--route", route]).output().expect("wsplug runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{route}: {stderr}");
        assert!(stderr.contains("PATH=COMPONENT") || stderr.contains("must start with `/`"), "{stderr}");
    }

    // A log filter that does not parse would log nothing at all.
    let output = Command::new(wsplug_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--log", "[[["])
        // RUST_LOG would win over --log.
        .env_remove("RUST_LOG")
        .arg("--route")
        .arg(format!("/echo={}", example("echo").display()))
        .output()
        .expect("wsplug runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(r#"log = "[[[" is not a log filter"#), "{stderr}");
}

#[test]
fn check_tells_what_a_component_is_or_why_it_cannot_be_served() {
    let check = |component: &std::path::Path| {
        let output = Command::new(wsplug_binary()).arg("check").arg(component).output().expect("wsplug runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        (output.status.code(), text)
    };
    let (code, text) = check(&example("chat"));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("world:     flow-handler") && text.contains("handshake: exported: the component decides"),
        "{text}"
    );
    assert!(text.contains("wsplug:websocket/topics@0.1.0"), "{text}");
    let (code, text) = check(&example("ticker"));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("world:     sink-source-handler"), "{text}");

    let (code, text) = check(&test_guest("not-a-handler"));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("is not a wsplug handler") && text.contains("it exports []"), "{text}");
    let (code, text) = check(std::path::Path::new("missing.wasm"));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("cannot read component file missing.wasm"), "{text}");
}

#[test]
fn log_format_json_writes_one_object_per_line() -> anyhow::Result<()> {
    use std::io::BufRead;
    let mut server = wsplug_tests::cli::Running(
        Command::new(wsplug_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--route"])
            .arg(format!("/greeter={}", example("greeter").display()))
            .stderr(Stdio::piped())
            .spawn()?,
    );
    // Every line is an object; one of them says where it serves.
    let mut log = std::io::BufReader::new(server.0.stderr.take().expect("stderr"));
    loop {
        let mut line = String::new();
        anyhow::ensure!(log.read_line(&mut line)? > 0, "no `serving` line");
        let record: serde_json::Value = serde_json::from_str(&line)?;
        assert!(record["timestamp"].is_string() && record["level"].is_string(), "{line}");
        let message = record["fields"]["message"].as_str().unwrap_or_default();
        if message.starts_with("serving ws://127.0.0.1:") {
            assert!(message.ends_with("/greeter"), "{line}");
            assert_eq!((record["level"].as_str(), record["target"].as_str()), (Some("INFO"), Some("wsplug")));
            return Ok(());
        }
    }
}
