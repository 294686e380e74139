//! Topics through real sockets: joins, publishes that reach every joined
//! connection (or all but the publisher), leave and close, error results,
//! a handler's own subscription, topic frames kept out of streamed replies,
//! and the admin API.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use wsplug::RouteConfig;
use wsplug_tests::{
    Client, RawClient, RawFrame, TestServer, admin_publish, config_with, example, receive, receive_text, test_guest,
};

const TEXT: u8 = 1;
const CONTINUATION: u8 = 0;

/// Sends one command to the pubsub guest.
async fn command(client: &mut Client, command: &str) -> anyhow::Result<()> {
    client.send(Message::text(command)).await?;
    Ok(())
}

/// Sends a command and returns the pubsub guest's answer, the next message.
async fn ask(client: &mut Client, text: &str) -> anyhow::Result<String> {
    command(client, text).await?;
    receive_text(client).await
}

/// The next `count` text messages, sorted (topic frames and the guest's own
/// answers may come in either order).
async fn next_texts(client: &mut Client, count: usize) -> anyhow::Result<Vec<String>> {
    let mut texts = Vec::new();
    for _ in 0..count {
        texts.push(receive_text(client).await?);
    }
    texts.sort();
    Ok(texts)
}

async fn pubsub_server() -> anyhow::Result<TestServer> {
    TestServer::start(&[("/pubsub", test_guest("pubsub"))]).await
}

#[tokio::test]
async fn a_publish_reaches_every_joined_connection_or_all_but_the_publisher() -> anyhow::Result<()> {
    let server = pubsub_server().await?;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = server.connect("/pubsub").await?;
        assert_eq!(ask(&mut client, "join news").await?, "ok");
        clients.push(client);
    }
    let [ann, bob, cat] = &mut clients[..] else { unreachable!() };

    command(ann, "publish news hello").await?;
    assert_eq!(next_texts(ann, 2).await?, ["hello", "reached 3"]);
    assert_eq!(receive_text(bob).await?, "hello");
    assert_eq!(receive_text(cat).await?, "hello");

    command(ann, "publish-others news psst").await?;
    assert_eq!(receive_text(ann).await?, "reached 2");
    assert_eq!(receive_text(bob).await?, "psst");
    assert_eq!(receive_text(cat).await?, "psst");
    // Had `psst` reached Ann, it would come before this.
    command(ann, "publish news marker").await?;
    assert_eq!(next_texts(ann, 2).await?, ["marker", "reached 3"]);
    assert_eq!(receive_text(cat).await?, "marker");

    command(bob, "publish-binary news bits").await?;
    assert_eq!(receive(cat).await?, Some(Message::binary(b"bits".to_vec())));
    Ok(())
}

#[tokio::test]
async fn leaving_or_closing_ends_the_deliveries() -> anyhow::Result<()> {
    let server = pubsub_server().await?;
    let mut ann = server.connect("/pubsub").await?;
    let mut bob = server.connect("/pubsub").await?;
    let mut cat = server.connect("/pubsub").await?;
    for client in [&mut ann, &mut bob, &mut cat] {
        assert_eq!(ask(client, "join news").await?, "ok");
    }
    assert_eq!(ask(&mut bob, "leave news").await?, "left true");
    assert_eq!(ask(&mut bob, "leave news").await?, "left false");
    assert_eq!(ask(&mut ann, "publish-others news one").await?, "reached 1");
    assert_eq!(receive_text(&mut cat).await?, "one");
    // Bob's next message is the answer to his own command, not `one`.
    assert_eq!(ask(&mut bob, "join other").await?, "ok");

    cat.close(None).await?;
    while receive(&mut cat).await?.is_some() {}
    server.subscribers("news", 1).await?;
    assert_eq!(ask(&mut ann, "publish-others news two").await?, "reached 0");
    drop((ann, bob));
    server.subscribers("news", 0).await?;
    server.subscribers("other", 0).await
}

#[tokio::test]
async fn bad_names_the_topic_cap_and_oversized_messages_are_error_results() -> anyhow::Result<()> {
    let mut route = RouteConfig::new("/pubsub", test_guest("pubsub"));
    route.max_topics = 2;
    let server = TestServer::start_with(config_with([route])).await?;
    let mut client = server.connect("/pubsub").await?;
    assert_eq!(ask(&mut client, "join a").await?, "ok");
    assert_eq!(ask(&mut client, "join a").await?, "ok", "joining twice is joining once");
    assert_eq!(ask(&mut client, "join b").await?, "ok");
    assert_eq!(ask(&mut client, "join c").await?, "error: TopicError::TooManyTopics(2)");
    assert_eq!(ask(&mut client, "join a/b").await?, "error: TopicError::InvalidName(\"a/b\")");
    assert_eq!(ask(&mut client, "publish Az09-_.:@~ x").await?, "reached 0");
    assert_eq!(ask(&mut client, "publish é x").await?, "error: TopicError::InvalidName(\"é\")");
    assert_eq!(ask(&mut client, "publish-size a 1048577").await?, "error: TopicError::TooLarge(1048576)");
    // Leaving frees a place; the connection carries on throughout.
    assert_eq!(ask(&mut client, "leave b").await?, "left true");
    assert_eq!(ask(&mut client, "join c").await?, "ok");
    Ok(())
}

#[tokio::test]
async fn topic_messages_wait_until_a_streamed_reply_has_ended() -> anyhow::Result<()> {
    let server = pubsub_server().await?;
    let mut client = RawClient::connect(server.address, "/pubsub").await?;
    client.send_frame(true, TEXT, b"join t").await?;
    assert_eq!(client.read_frame().await?, RawFrame { fin: true, rsv1: false, opcode: TEXT, payload: b"ok".to_vec() });
    client.send_frame(true, TEXT, b"stream t").await?;
    assert_eq!(
        client.read_frame().await?,
        RawFrame { fin: false, rsv1: false, opcode: TEXT, payload: b"one ".to_vec() }
    );
    // The reply is open on the wire; now the guest publishes to `t`.
    client.send_frame(true, TEXT, b"go").await?;
    let continuation = RawFrame { fin: false, rsv1: false, opcode: CONTINUATION, payload: b"two three".to_vec() };
    assert_eq!(client.read_frame().await?, continuation);
    assert_eq!(client.read_frame().await?, RawFrame { fin: true, rsv1: false, opcode: CONTINUATION, payload: vec![] });
    let published = RawFrame { fin: true, rsv1: false, opcode: TEXT, payload: b"in the middle".to_vec() };
    assert_eq!(client.read_frame().await?, published);
    Ok(())
}

#[tokio::test]
async fn a_handler_can_subscribe_and_filter_what_it_passes_on() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/pubsub", test_guest("pubsub")), ("/shouter", test_guest("shouter"))]).await?;
    let mut shouter = server.connect("/shouter?topic=alerts").await?;
    assert_eq!(receive_text(&mut shouter).await?, "subscribed");
    let mut publisher = server.connect("/pubsub").await?;
    assert_eq!(ask(&mut publisher, "publish alerts calm").await?, "reached 1");
    assert_eq!(ask(&mut publisher, "publish alerts fire!").await?, "reached 1");
    assert_eq!(ask(&mut publisher, "publish-binary alerts binary!").await?, "reached 1");
    assert_eq!(ask(&mut publisher, "publish alerts again!").await?, "reached 1");
    assert_eq!(receive_text(&mut shouter).await?, "FIRE!");
    assert_eq!(receive_text(&mut shouter).await?, "AGAIN!");

    let bad = server.connect("/shouter?topic=no%20spaces").await;
    assert_eq!(receive_text(&mut bad?).await?, "error: TopicError::InvalidName(\"no%20spaces\")");
    drop(shouter);
    server.subscribers("alerts", 0).await
}

#[tokio::test]
async fn the_admin_api_publishes_and_refuses_what_it_should() -> anyhow::Result<()> {
    let mut config = config_with([RouteConfig::new("/feed", example("feed"))]);
    config.topics.max_message_size = 1024;
    config.routes[0].max_buffered = 1024;
    let server = TestServer::start_with(config).await?;
    let admin = server.admin(Some("s3cret")).await?;
    let mut reader = server.connect("/feed?topic=news").await?;
    server.subscribers("feed:news", 1).await?;
    let token = Some("s3cret");

    let published = admin_publish(admin, "feed:news", "text/plain; charset=utf-8", "hello", token).await?;
    assert_eq!((published.status, published.body.as_str()), (202, "{\"reached\":1}\n"));
    assert_eq!(receive_text(&mut reader).await?, "hello");
    let published = admin_publish(admin, "feed:news", "application/octet-stream", "bytes", token).await?;
    assert_eq!(published.status, 202);
    assert_eq!(receive(&mut reader).await?, Some(Message::binary(b"bytes".to_vec())));
    // A message as large as the limit reaches a connection whose queues are
    // empty, even though its frame is larger than `max-buffered`.
    let largest = "x".repeat(1024);
    let published = admin_publish(admin, "feed:news", "text/plain", &largest, token).await?;
    assert_eq!((published.status, published.body.as_str()), (202, "{\"reached\":1}\n"));
    assert_eq!(receive_text(&mut reader).await?, largest);
    let nobody = admin_publish(admin, "feed:empty", "text/plain", "hello", token).await?;
    assert_eq!((nobody.status, nobody.body.as_str()), (202, "{\"reached\":0}\n"));

    assert_eq!(admin_publish(admin, "feed:news", "text/plain", "x", None).await?.status, 401);
    assert_eq!(admin_publish(admin, "feed:news", "text/plain", "x", Some("guess")).await?.status, 401);
    assert_eq!(admin_publish(admin, "bad%20name", "text/plain", "x", token).await?.status, 400);
    assert_eq!(admin_publish(admin, "feed:news", "text/plain", &"x".repeat(1025), token).await?.status, 413);
    let exchange = |request: String| async move { wsplug_tests::http_exchange(admin, &request).await };
    let auth = "Authorization: Bearer s3cret\r\nConnection: close\r\n";
    assert_eq!(exchange(format!("GET /topics/feed:news HTTP/1.1\r\nHost: a\r\n{auth}\r\n")).await?.status, 405);
    // Other methods on the other paths: 405 too, /healthz without a token.
    let healthz = exchange("POST /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_owned()).await?;
    assert_eq!(healthz.status, 405);
    assert_eq!(exchange(format!("DELETE /metrics HTTP/1.1\r\nHost: a\r\n{auth}\r\n")).await?.status, 405);
    // A percent-encoded name is the name (what encodeURIComponent makes of `feed:news`).
    let encoded = admin_publish(admin, "feed%3Anews", "text/plain", "encoded", token).await?;
    assert_eq!((encoded.status, encoded.body.as_str()), (202, "{\"reached\":1}\n"));
    assert_eq!(receive_text(&mut reader).await?, "encoded");
    assert_eq!(exchange(format!("POST /elsewhere HTTP/1.1\r\nHost: a\r\n{auth}\r\n")).await?.status, 404);
    let bad_utf8 = format!(
        "POST /topics/feed:news HTTP/1.1\r\nHost: a\r\n{auth}Content-Type: text/plain\r\nContent-Length: 1\r\n\r\n\u{ff}"
    );
    // `\u{ff}` is two bytes in UTF-8; a one-byte body cuts it in half.
    assert_eq!(exchange(bad_utf8).await?.status, 400);
    // Nothing refused reached the reader: its next message is the next publish.
    admin_publish(admin, "feed:news", "text/plain", "last", token).await?;
    assert_eq!(receive_text(&mut reader).await?, "last");
    Ok(())
}

#[tokio::test]
async fn the_feed_example_decodes_a_percent_encoded_topic_name() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/feed", example("feed"))]).await?;
    let admin = server.admin(None).await?;
    // What encodeURIComponent("prices:EUR") makes of the name.
    let mut reader = server.connect("/feed?topic=prices%3AEUR").await?;
    server.subscribers("feed:prices:EUR", 1).await?;
    let published = admin_publish(admin, "feed:prices:EUR", "text/plain", "1.08", None).await?;
    assert_eq!((published.status, published.body.as_str()), (202, "{\"reached\":1}\n"));
    assert_eq!(receive_text(&mut reader).await?, "1.08");
    Ok(())
}

#[tokio::test]
async fn the_chat_example_speaks_its_protocol() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/chat", example("chat"))]).await?;
    let admin = server.admin(None).await?;
    let mut ann = server.connect("/chat?room=r1&name=Ann").await?;
    assert_eq!(receive_text(&mut ann).await?, "* Ann joined");
    let mut bob = server.connect("/chat?room=r1&name=Bob%20B").await?;
    assert_eq!(receive_text(&mut bob).await?, "* Bob B joined");
    assert_eq!(receive_text(&mut ann).await?, "* Bob B joined");
    let mut cat = server.connect("/chat?room=r2&name=Cat").await?;
    assert_eq!(receive_text(&mut cat).await?, "* Cat joined");

    bob.send(Message::text("hi all")).await?;
    assert_eq!(receive_text(&mut ann).await?, "Bob B: hi all");
    assert_eq!(receive_text(&mut bob).await?, "Bob B: hi all");
    let notice = admin_publish(admin, "room:r1", "text/plain", "server restarts at noon", None).await?;
    assert_eq!(notice.body, "{\"reached\":2}\n");
    assert_eq!(receive_text(&mut ann).await?, "server restarts at noon");
    assert_eq!(receive_text(&mut bob).await?, "server restarts at noon");
    // Room r2 heard none of it: Cat's next message is her own.
    cat.send(Message::text("anyone?")).await?;
    assert_eq!(receive_text(&mut cat).await?, "Cat: anyone?");

    bob.close(None).await?;
    assert_eq!(receive_text(&mut ann).await?, "* Bob B left");

    for (query, reason) in [
        ("name=Ann", "the query needs room=R"),
        ("room=r1", "the query needs name=N"),
        ("room=a%2Fb&name=Ann", "room must be 1 to 64 letters, digits, - or _"),
        ("room=r1&name=", "name must be 1 to 32 characters, none of them control characters"),
    ] {
        match tokio_tungstenite::connect_async(format!("ws://{}/chat?{query}", server.address)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(refused)) => {
                let body = String::from_utf8_lossy(refused.body().as_deref().unwrap_or_default()).into_owned();
                assert_eq!((refused.status().as_u16(), body.as_str()), (400, reason), "{query}");
            }
            other => anyhow::bail!("{query}: expected 400, got {other:?}"),
        }
    }
    Ok(())
}
