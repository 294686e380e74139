//! TLS (`tls-cert`, `tls-key`): WebSockets over `wss://` with HTTP/1.1 and
//! HTTP/2 (ALPN), with a certificate the test makes; and the startup errors
//! for files that are missing, not PEM, or a key that does not fit.

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use wsplug::RouteConfig;
use wsplug_tests::cli::talk;
use wsplug_tests::{TestServer, config_with, example, guard, websocket_over_http2, wsplug_binary};

/// A self-signed certificate for `localhost` and its key, as PEM files in a
/// directory of their own; returns the directory and the certificate.
fn certificate(name: &str) -> anyhow::Result<(PathBuf, rcgen::CertifiedKey<rcgen::KeyPair>)> {
    let dir = std::env::temp_dir().join(format!("wsplug-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    std::fs::write(dir.join("cert.pem"), certified.cert.pem())?;
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem())?;
    Ok((dir, certified))
}

/// A TLS connection to `server` that trusts only `trusted`, offering `alpn`.
async fn connect(
    server: &TestServer,
    trusted: &rcgen::CertifiedKey<rcgen::KeyPair>,
    alpn: &[u8],
) -> anyhow::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.cert.der().clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(server.address).await?;
    let stream = TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost")?, tcp).await?;
    anyhow::ensure!(stream.get_ref().1.alpn_protocol() == Some(alpn), "the server chose another protocol");
    Ok(stream)
}

async fn tls_server(dir: &Path) -> anyhow::Result<TestServer> {
    let mut config = config_with([RouteConfig::new("/greeter", example("greeter"))]);
    config.tls_cert = Some(dir.join("cert.pem"));
    config.tls_key = Some(dir.join("key.pem"));
    TestServer::start_with(config).await
}

#[tokio::test]
async fn greets_over_wss_with_http1_and_http2() -> anyhow::Result<()> {
    let (dir, certified) = certificate("serve")?;
    let server = tls_server(&dir).await?;

    let tls = connect(&server, &certified, b"http/1.1").await?;
    let url = format!("wss://localhost:{}/greeter", server.address.port());
    let (mut socket, _) = guard(tokio_tungstenite::client_async(url, tls)).await??;
    socket.send(Message::text("Peter")).await?;
    assert_eq!(guard(socket.next()).await?.transpose()?, Some(Message::text("Hello Peter!")));

    // RFC 8441 over TLS: ALPN h2, then an extended CONNECT.
    let tls = connect(&server, &certified, b"h2").await?;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    let url = format!("https://localhost:{}/greeter", server.address.port());
    let mut socket = websocket_over_http2(&mut sender, &url).await?;
    socket.send(Message::text("John")).await?;
    assert_eq!(guard(socket.next()).await?.transpose()?, Some(Message::text("Hello John!")));

    // A client that does not speak TLS gets nothing served.
    let mut plain = TcpStream::connect(server.address).await?;
    tokio::io::AsyncWriteExt::write_all(&mut plain, b"GET /greeter HTTP/1.1\r\nHost: a\r\n\r\n").await?;
    let mut answer = Vec::new();
    let _ = guard(tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut answer)).await?;
    assert!(!answer.starts_with(b"HTTP/1.1"), "{}", String::from_utf8_lossy(&answer));
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[tokio::test]
async fn talk_speaks_wss_trusting_the_certificate_given_with_ca() -> anyhow::Result<()> {
    let (dir, _) = certificate("talk")?;
    let server = tls_server(&dir).await?;
    let url = format!("wss://localhost:{}/greeter", server.address.port());
    let ca = dir.join("cert.pem").to_str().expect("a UTF-8 path").to_owned();

    let (success, stdout, stderr) = tokio::task::spawn_blocking(move || talk(&["--ca", &ca, &url], b"Peter\n")).await?;
    assert!(success, "{stderr}");
    assert!(stdout.contains("< Hello Peter!\n"), "{stdout}");

    // Without it, the self-signed certificate is not trusted, and talk says
    // what to do.
    let url = format!("wss://localhost:{}/greeter", server.address.port());
    let (success, _, stderr) = tokio::task::spawn_blocking(move || talk(&[&url], b"")).await?;
    assert!(!success, "{stderr}");
    assert!(stderr.contains("pass it with --ca FILE"), "{stderr}");
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

/// `wsplug serve` with TLS files: its exit code and standard error.
fn serve_with_tls(cert: &Path, key: &Path) -> (Option<i32>, String) {
    let output = Command::new(wsplug_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--route"])
        .arg(format!("/greeter={}", example("greeter").display()))
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .output()
        .expect("wsplug runs");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn bad_tls_files_are_startup_errors_naming_the_file() -> anyhow::Result<()> {
    let (dir, _) = certificate("bad")?;
    let (other, _) = certificate("other")?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));

    let (code, stderr) = serve_with_tls(&dir.join("missing.pem"), &key);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot read TLS certificate file") && stderr.contains("missing.pem"), "{stderr}");

    std::fs::write(dir.join("garbage.pem"), "not a certificate")?;
    let (code, stderr) = serve_with_tls(&dir.join("garbage.pem"), &key);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("garbage.pem holds no PEM certificate"), "{stderr}");
    let (code, stderr) = serve_with_tls(&cert, &dir.join("garbage.pem"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("garbage.pem holds no PEM private key"), "{stderr}");

    let (code, stderr) = serve_with_tls(&cert, &other.join("key.pem"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("does not fit the certificate"), "{stderr}");
    for dir in [dir, other] {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}
