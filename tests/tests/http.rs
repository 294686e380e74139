//! The HTTP side of a WebSocket route: what requests that are not valid
//! upgrades get back.

use wsplug_tests::{TestServer, example, http_exchange};

async fn server() -> anyhow::Result<TestServer> {
    TestServer::start(&[("/greeter", example("greeter"))]).await
}

#[tokio::test]
async fn a_plain_request_to_a_websocket_route_gets_400() -> anyhow::Result<()> {
    let server = server().await?;
    let response =
        http_exchange(server.address, "GET /greeter HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
    assert_eq!(response.status, 400);
    assert_eq!(response.body, "Not a valid websocket request!");
    Ok(())
}

#[tokio::test]
async fn an_unknown_path_gets_404() -> anyhow::Result<()> {
    let server = server().await?;
    let response =
        http_exchange(server.address, "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
    assert_eq!(response.status, 404);
    assert_eq!(response.body, "Unknown resource!");
    Ok(())
}

#[tokio::test]
async fn an_unsupported_websocket_version_gets_426_naming_13() -> anyhow::Result<()> {
    let server = server().await?;
    let response = http_exchange(
        server.address,
        "GET /greeter HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await?;
    assert_eq!(response.status, 426);
    assert!(response.head.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{}", response.head);
    Ok(())
}

#[tokio::test]
async fn a_rejected_request_body_is_drained_and_the_connection_reused() -> anyhow::Result<()> {
    let server = server().await?;
    // Two requests on one connection: the first one's body must be consumed
    // for the second one to be read as a request.
    let response = http_exchange(
        server.address,
        "POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world\
         GET /greeter HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await?;
    assert_eq!(response.status, 404);
    assert!(response.body.contains("HTTP/1.1 400"), "second answer missing: {:?}", response.body);
    assert!(response.body.ends_with("Not a valid websocket request!"), "{:?}", response.body);
    Ok(())
}
