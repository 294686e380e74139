//! Server push: the ticker's source sends on its own while its sink counts.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use wsplug_tests::{TestServer, example, receive_text};

#[tokio::test]
async fn pushes_without_input_and_counts_what_it_receives() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/ticker", example("ticker"))]).await?;
    let mut client = server.connect("/ticker?interval_ms=20").await?;
    assert_eq!(receive_text(&mut client).await?, "tick 1");
    assert_eq!(receive_text(&mut client).await?, "tick 2");

    for text in ["a", "b", "count"] {
        client.send(Message::text(text)).await?;
    }
    // The report comes with a later push; ticks keep coming meanwhile.
    loop {
        let pushed = receive_text(&mut client).await?;
        if pushed.starts_with("received") {
            assert_eq!(pushed, "received 3");
            break;
        }
        assert!(pushed.starts_with("tick "), "unexpected push {pushed:?}");
    }
    Ok(())
}
