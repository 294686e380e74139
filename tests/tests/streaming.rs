//! Streamed messages on the wire: a client's message reaches the guest as
//! its frames arrive, a guest's streamed reply leaves as a fragmented message
//! while the guest is still writing it, and streamed messages pass through a
//! guest unchanged. And messages that wait for the guest reach it together.

use futures_util::SinkExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use wsplug_tests::{RawClient, RawFrame, TestServer, example, receive, receive_text, test_guest};

const TEXT: u8 = 1;
const CONTINUATION: u8 = 0;

#[tokio::test]
async fn a_streamed_reply_is_on_the_wire_before_the_guest_finishes_it() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/stepwise", test_guest("stepwise"))]).await?;
    let mut client = RawClient::connect(server.address, "/stepwise").await?;

    // The guest writes each message as one chunk of a reply it ends only on
    // `end`: each frame must arrive while the reply is still open.
    client.send_frame(true, TEXT, b"one").await?;
    assert_eq!(
        client.read_frame().await?,
        RawFrame { fin: false, rsv1: false, opcode: TEXT, payload: b"one".to_vec() }
    );
    client.send_frame(true, TEXT, b"two").await?;
    assert_eq!(
        client.read_frame().await?,
        RawFrame { fin: false, rsv1: false, opcode: CONTINUATION, payload: b"two".to_vec() }
    );
    client.send_frame(true, TEXT, b"end").await?;
    assert_eq!(client.read_frame().await?, RawFrame { fin: true, rsv1: false, opcode: CONTINUATION, payload: vec![] });
    Ok(())
}

#[tokio::test]
async fn echo_returns_large_messages_unchanged() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/echo", example("echo"))]).await?;
    let mut client = server.connect("/echo").await?;
    let binary: Vec<u8> = (0..3 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let text = "wsplug ✓ ".repeat(50_000);
    let small = Message::text("small");
    for message in [Message::binary(binary), Message::text(text), small] {
        client.send(message.clone()).await?;
        assert_eq!(receive(&mut client).await?, Some(message));
    }
    Ok(())
}

/// Reads a fragmented text reply's frames until their text so far is
/// `expected`; fails if the reply ends first.
async fn read_reply_until(client: &mut RawClient, reply: &mut String, expected: &str) -> anyhow::Result<()> {
    while reply.len() < expected.len() {
        let frame = client.read_frame().await?;
        anyhow::ensure!(!frame.fin, "the reply ended early: {reply:?} then {frame:?}");
        reply.push_str(std::str::from_utf8(&frame.payload)?);
    }
    anyhow::ensure!(reply == expected, "expected {expected:?}, got {reply:?}");
    Ok(())
}

/// Reads the rest of a fragmented text reply.
async fn read_reply_to_end(client: &mut RawClient, reply: &mut String) -> anyhow::Result<()> {
    loop {
        let frame = client.read_frame().await?;
        reply.push_str(std::str::from_utf8(&frame.payload)?);
        if frame.fin {
            return Ok(());
        }
    }
}

#[tokio::test]
async fn the_greeter_answers_fragments_before_the_message_ends() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/greeter", example("greeter"))]).await?;
    let mut client = RawClient::connect(server.address, "/greeter").await?;
    let mut reply = String::new();

    client.send_frame(false, TEXT, b"Stre").await?;
    client.send_frame(false, CONTINUATION, b"am").await?;
    // The reply is under way while the client has not sent the end of its
    // message yet.
    read_reply_until(&mut client, &mut reply, "Hello Stream").await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    client.send_frame(true, CONTINUATION, b"ing").await?;
    read_reply_to_end(&mut client, &mut reply).await?;
    assert_eq!(reply, "Hello Streaming!");
    Ok(())
}

#[tokio::test]
async fn a_large_frame_reaches_the_guest_before_its_last_byte() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/greeter", example("greeter"))]).await?;
    let mut client = RawClient::connect(server.address, "/greeter").await?;
    let mut reply = String::new();

    // One frame of a megabyte, of which only the first 100 KiB are sent.
    client.send_frame_header(true, TEXT, 1 << 20).await?;
    client.send_payload(&[b'a'; 100 * 1024]).await?;
    let expected = format!("Hello {}", "a".repeat(100 * 1024));
    read_reply_until(&mut client, &mut reply, &expected).await?;
    client.send_payload(&vec![b'b'; (1 << 20) - 100 * 1024]).await?;
    read_reply_to_end(&mut client, &mut reply).await?;
    assert_eq!(reply, format!("{expected}{}!", "b".repeat((1 << 20) - 100 * 1024)));
    Ok(())
}

#[tokio::test]
async fn messages_waiting_for_the_guest_reach_it_in_one_read_in_order() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/burst", test_guest("burst"))]).await?;
    let mut client = server.connect("/burst").await?;
    // Sent at once while the guest waits before its first read: the host
    // holds two of them (the rest stay in the socket), and the guest's first
    // read takes both. Each reply says how many more the guest had at hand.
    for text in ["a", "b", "c", "d"] {
        client.feed(Message::text(text)).await?;
    }
    client.flush().await?;
    let mut replies = Vec::new();
    for _ in 0..4 {
        replies.push(receive_text(&mut client).await?);
    }
    assert_eq!(replies[..2], ["a +1", "b +0"]);
    let order: Vec<&str> = replies.iter().map(|reply| &reply[..1]).collect();
    assert_eq!(order, ["a", "b", "c", "d"], "{replies:?}");
    Ok(())
}
