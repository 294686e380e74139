//! The greeter, end to end: a real server, a real client, the real component.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use wsplug_tests::{TestServer, example, receive_text};

async fn greeter() -> anyhow::Result<TestServer> {
    TestServer::start(&[("/greeter", example("greeter"))]).await
}

#[tokio::test]
async fn greets_several_names_in_a_row() -> anyhow::Result<()> {
    let server = greeter().await?;
    let mut client = server.connect("/greeter").await?;
    for name in ["Peter", "John", "Zoë", ""] {
        client.send(Message::text(name)).await?;
        assert_eq!(receive_text(&mut client).await?, format!("Hello {name}!"));
    }
    Ok(())
}

#[tokio::test]
async fn greets_a_fragmented_name_as_a_whole() -> anyhow::Result<()> {
    let server = greeter().await?;
    let mut client = server.connect("/greeter").await?;
    client.send(Message::Frame(Frame::message(Bytes::from("Pe"), OpCode::Data(Data::Text), false))).await?;
    client.send(Message::Frame(Frame::message(Bytes::from("t"), OpCode::Data(Data::Continue), false))).await?;
    client.send(Message::Frame(Frame::message(Bytes::from("er"), OpCode::Data(Data::Continue), true))).await?;
    assert_eq!(receive_text(&mut client).await?, "Hello Peter!");
    Ok(())
}

#[tokio::test]
async fn ignores_binary_messages_and_answers_the_next_text() -> anyhow::Result<()> {
    let server = greeter().await?;
    let mut client = server.connect("/greeter").await?;
    client.send(Message::binary(vec![1, 2, 3])).await?;
    // Large enough to reach the guest as a stream, which it drops unread: the
    // host discards the rest and the connection goes on.
    client.send(Message::binary(vec![7; 1024 * 1024])).await?;
    client.send(Message::text("Peter")).await?;
    assert_eq!(receive_text(&mut client).await?, "Hello Peter!");
    Ok(())
}

#[tokio::test]
async fn greets_a_name_too_large_to_be_strict() -> anyhow::Result<()> {
    let server = greeter().await?;
    let mut client = server.connect("/greeter").await?;
    // Multi-byte characters, so that chunk boundaries fall inside some of them.
    let name = "Zoë-Ωmega-😀-".repeat(20_000);
    client.send(Message::text(name.clone())).await?;
    assert_eq!(receive_text(&mut client).await?, format!("Hello {name}!"));
    client.send(Message::text("Peter")).await?;
    assert_eq!(receive_text(&mut client).await?, "Hello Peter!");
    Ok(())
}

#[tokio::test]
async fn closes_normally_when_the_client_closes() -> anyhow::Result<()> {
    let server = greeter().await?;
    let mut client = server.connect("/greeter").await?;
    client.send(Message::text("Peter")).await?;
    assert_eq!(receive_text(&mut client).await?, "Hello Peter!");
    client.close(None).await?;
    // The server answers the close and ends the connection.
    match wsplug_tests::receive(&mut client).await? {
        None | Some(Message::Close(_)) => Ok(()),
        other => anyhow::bail!("expected the close handshake, got {other:?}"),
    }
}
