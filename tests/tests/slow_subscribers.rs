//! A subscriber that does not read, against a publisher that does not stop,
//! with `wsplug serve` in a process of its own so that its memory can be
//! watched: the host's memory stays bounded, the slow one loses messages
//! (`slow-subscriber = "drop"`) or its connection (`"close"`, 1008), and a
//! subscriber that reads is not held up by it.

use futures_util::StreamExt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use wsplug_tests::cli::{Running, log_line, serve_config};
use wsplug_tests::{RawClient, admin_publish, example, guard, resident_bytes};

/// A published message: big, so that a few fill the subscriber's queue.
const MESSAGE: usize = 64 * 1024;

/// The host's allowance per connection in these tests.
const MAX_BUFFERED: usize = 1 << 20;

/// A host with the feed example and the admin API; returns the host, the
/// public and the admin address and the log. `/feed` has `MAX_BUFFERED`
/// and `policy`; `/roomy` (the same feed) has room for everything the tests
/// publish, so that what its subscriber gets does not depend on how fast
/// this machine lets it read.
fn feed_host(policy: &str) -> (Running, SocketAddr, SocketAddr, std::sync::mpsc::Receiver<String>) {
    let (server, urls, log) = serve_config(&format!(
        "admin-listen = \"127.0.0.1:0\"\n\n[[route]]\npath = \"/feed\"\ncomponent = {feed:?}\n\
         max-buffered = {MAX_BUFFERED}\nslow-subscriber = \"{policy}\"\n\n\
         [[route]]\npath = \"/roomy\"\ncomponent = {feed:?}\nmax-buffered = {}\n",
        256 << 20,
        feed = example("feed"),
    ));
    let address = |url: &str, scheme: &str| -> SocketAddr {
        url.strip_prefix(scheme).and_then(|rest| rest.split('/').next()?.parse().ok()).expect("an address")
    };
    (server, address(&urls[0], "ws://"), address(&urls[2], "http://"), log)
}

/// Publishes `body` as text to `feed:flood`; returns how many it reached.
async fn publish(admin: SocketAddr, body: &str) -> anyhow::Result<usize> {
    let response = admin_publish(admin, "feed:flood", "text/plain", body, None).await?;
    anyhow::ensure!(response.status == 202, "publish answered {}: {}", response.status, response.body);
    let reached = response.body.trim().trim_start_matches("{\"reached\":").trim_end_matches('}');
    Ok(reached.parse()?)
}

/// Publishes until `count` subscribers are there to receive it.
async fn until_subscribed(admin: SocketAddr, count: usize) -> anyhow::Result<()> {
    guard(async {
        while publish(admin, "warm-up").await? < count {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(())
    })
    .await?
}

/// Publishes `messages` big messages as fast as the admin API takes them;
/// returns how far the host's resident memory grew at most meanwhile.
async fn flood(server: &Running, admin: SocketAddr, messages: usize) -> anyhow::Result<u64> {
    let pid = server.0.id().to_string();
    let before = resident_bytes(&pid);
    let mut peak = before;
    let payload = "x".repeat(MESSAGE);
    for sent in 0..messages {
        publish(admin, &payload).await?;
        if sent % 16 == 0 {
            peak = peak.max(resident_bytes(&pid));
        }
    }
    Ok(peak.max(resident_bytes(&pid)).saturating_sub(before))
}

#[tokio::test]
async fn a_subscriber_that_reads_nothing_loses_messages_and_costs_bounded_memory() -> anyhow::Result<()> {
    let (server, address, admin, log) = feed_host("drop");
    let mut slow = RawClient::connect(address, "/feed?topic=flood").await?;
    until_subscribed(admin, 1).await?;

    // 64 MiB for a subscriber that reads nothing, with 1 MiB allowed.
    let grown = flood(&server, admin, 1024).await?;
    assert!(grown < 16 << 20, "the host grew by {} MiB", grown >> 20);

    // It is still connected: it gets what fitted, then what is published
    // once it reads again.
    let mut big = 0;
    let resumed = async {
        loop {
            let frame = slow.read_frame().await?;
            match frame.payload.as_slice() {
                b"after" => return anyhow::Ok(()),
                payload if payload.len() == MESSAGE => big += 1,
                _ => {}
            }
        }
    };
    let publish_after = async {
        loop {
            publish(admin, "after").await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        resumed = resumed => resumed?,
        failed = publish_after => return failed,
    }
    assert!(big < 1024, "the slow subscriber got all {big} messages");
    drop(slow);
    let dropped = log_line(&log, &["topic messages dropped"]);
    assert!(dropped.contains("dropped="), "{dropped}");
    Ok(())
}

#[tokio::test]
async fn a_slow_subscriber_does_not_hold_up_one_that_reads() -> anyhow::Result<()> {
    let (_server, address, admin, _log) = feed_host("drop");
    let _slow = RawClient::connect(address, "/feed?topic=flood").await?;
    let (mut reader, _) = tokio_tungstenite::connect_async(format!("ws://{address}/roomy?topic=flood")).await?;
    until_subscribed(admin, 2).await?;
    let reading = tokio::spawn(async move {
        let mut big = 0;
        while let Some(message) = guard(reader.next()).await? {
            match message? {
                Message::Text(text) if text.as_str() == "end" => return anyhow::Ok(big),
                Message::Text(text) if text.len() == MESSAGE => big += 1,
                _ => {}
            }
        }
        anyhow::bail!("the reading subscriber's connection ended")
    });
    // 16 MiB: more than the slow one's allowance and socket buffers hold.
    let payload = "x".repeat(MESSAGE);
    for _ in 0..256 {
        // Queued for the reader always, for the slow one while it has room.
        assert!((1..=2).contains(&publish(admin, &payload).await?));
    }
    publish(admin, "end").await?;
    assert_eq!(reading.await??, 256, "the reader got every message");
    Ok(())
}

#[tokio::test]
async fn with_the_close_policy_a_slow_subscriber_is_closed_with_1008() -> anyhow::Result<()> {
    let (server, address, admin, log) = feed_host("close");
    let mut slow = RawClient::connect(address, "/feed?topic=flood").await?;
    until_subscribed(admin, 1).await?;
    let grown = flood(&server, admin, 256).await?;
    assert!(grown < 16 << 20, "the host grew by {} MiB", grown >> 20);
    log_line(&log, &["closing", "code=1008", "too slow for its topics"]);
    // What was queued before the close still arrives, then the close frame.
    let close = loop {
        let frame = slow.read_frame().await?;
        if frame.opcode == 8 {
            break frame;
        }
    };
    assert_eq!(close.close_code(), Some(1008));
    assert_eq!(&close.payload[2..], b"too slow for its topics");
    Ok(())
}
