//! Streamed messages on the wire: a guest's streamed reply leaves as a
//! fragmented message while the guest is still writing it, and streamed
//! messages pass through a guest unchanged.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use wsplug_tests::{RawClient, RawFrame, TestServer, example, receive, test_guest};

const TEXT: u8 = 1;
const CONTINUATION: u8 = 0;

#[tokio::test]
async fn a_streamed_reply_is_on_the_wire_before_the_guest_finishes_it() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/stepwise", test_guest("stepwise"))]).await?;
    let mut client = RawClient::connect(server.address, "/stepwise").await?;

    // The guest writes each message as one chunk of a reply it ends only on
    // `end`: each frame must arrive while the reply is still open.
    client.send_frame(true, TEXT, b"one").await?;
    assert_eq!(client.read_frame().await?, RawFrame { fin: false, opcode: TEXT, payload: b"one".to_vec() });
    client.send_frame(true, TEXT, b"two").await?;
    assert_eq!(client.read_frame().await?, RawFrame { fin: false, opcode: CONTINUATION, payload: b"two".to_vec() });
    client.send_frame(true, TEXT, b"end").await?;
    assert_eq!(client.read_frame().await?, RawFrame { fin: true, opcode: CONTINUATION, payload: vec![] });
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
