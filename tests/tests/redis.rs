//! Topics across hosts: two `wsplug serve` processes on one real
//! `redis-server` (`[topics] redis`). Chat rooms span both hosts; an admin
//! publish on one reaches clients of the other; a host follows its
//! connections' topics on Redis; and when Redis goes away and comes back,
//! both hosts say so, refuse publishes meanwhile, and deliver again without
//! a restart; while it stalls, what waits for it is bounded in bytes.

use futures_util::SinkExt;
use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use wsplug_tests::cli::{Running, log_line, serve_config};
use wsplug_tests::redis::RedisServer;
use wsplug_tests::{Client, admin_publish, example, guard, receive_text, test_guest};

/// One `wsplug serve` with the chat example, the pubsub test guest and the
/// admin API, on the Redis at `redis`.
struct Host {
    _process: Running,
    address: SocketAddr,
    admin: SocketAddr,
    log: Receiver<String>,
}

impl Host {
    fn start(redis: &str) -> Self {
        let (process, urls, log) = serve_config(&format!(
            "admin-listen = \"127.0.0.1:0\"\n\n[topics]\nredis = \"{redis}\"\n\n\
             [[route]]\npath = \"/chat\"\ncomponent = {:?}\n\n[[route]]\npath = \"/pubsub\"\ncomponent = {:?}\n",
            example("chat"),
            test_guest("pubsub"),
        ));
        let address = |url: &str, scheme: &str| -> SocketAddr {
            url.strip_prefix(scheme).and_then(|rest| rest.split('/').next()?.parse().ok()).expect("an address")
        };
        Self { address: address(&urls[0], "ws://"), admin: address(&urls[2], "http://"), _process: process, log }
    }

    async fn connect(&self, path: &str) -> anyhow::Result<Client> {
        let (client, _) = guard(tokio_tungstenite::connect_async(format!("ws://{}{path}", self.address))).await??;
        Ok(client)
    }

    /// Waits for the log line that has all of `parts`.
    fn logs(&self, parts: &[&str]) -> String {
        log_line(&self.log, parts)
    }
}

/// Waits until `count` hosts subscribe to `topic` on Redis.
async fn hosts_subscribed(redis: &RedisServer, topic: &str, count: usize) -> anyhow::Result<()> {
    let channel = format!("wsplug:{topic}");
    guard(async {
        while redis.subscribers(&channel)? != count {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(())
    })
    .await?
}

async fn ask(client: &mut Client, command: &str) -> anyhow::Result<String> {
    client.send(Message::text(command)).await?;
    receive_text(client).await
}

#[tokio::test]
async fn a_chat_room_spans_two_hosts() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let (a, b) = (Host::start(&redis.url()), Host::start(&redis.url()));
    a.logs(&["connected to Redis at", &redis.url()]);
    b.logs(&["connected to Redis at", &redis.url()]);

    let mut ann = a.connect("/chat?room=r&name=Ann").await?;
    assert_eq!(receive_text(&mut ann).await?, "* Ann joined");
    hosts_subscribed(&redis, "room:r", 1).await?;
    let mut bob = b.connect("/chat?room=r&name=Bob").await?;
    assert_eq!(receive_text(&mut bob).await?, "* Bob joined");
    assert_eq!(receive_text(&mut ann).await?, "* Bob joined");
    hosts_subscribed(&redis, "room:r", 2).await?;

    ann.send(Message::text("hello from A")).await?;
    assert_eq!(receive_text(&mut ann).await?, "Ann: hello from A");
    assert_eq!(receive_text(&mut bob).await?, "Ann: hello from A");
    bob.send(Message::text("hello from B")).await?;
    assert_eq!(receive_text(&mut bob).await?, "Bob: hello from B");
    assert_eq!(receive_text(&mut ann).await?, "Bob: hello from B");

    // The admin API of B reaches Ann on A (and counts B's own subscribers).
    let notice = admin_publish(b.admin, "room:r", "text/plain", "notice from B", None).await?;
    assert_eq!((notice.status, notice.body.as_str()), (202, "{\"reached\":1}\n"));
    assert_eq!(receive_text(&mut ann).await?, "notice from B");
    assert_eq!(receive_text(&mut bob).await?, "notice from B");

    // Bob leaves: Ann hears it, and B no longer listens to the room.
    bob.close(None).await?;
    assert_eq!(receive_text(&mut ann).await?, "* Bob left");
    hosts_subscribed(&redis, "room:r", 1).await?;
    drop(ann);
    hosts_subscribed(&redis, "room:r", 0).await
}

#[tokio::test]
async fn both_hosts_ride_out_redis_going_away_and_coming_back() -> anyhow::Result<()> {
    // A starts before Redis: it serves anyway and says so.
    let mut redis = RedisServer::start().await?;
    redis.kill();
    let a = Host::start(&redis.url());
    a.logs(&["Redis at", &redis.url(), "is unreachable"]);
    let mut early = a.connect("/pubsub").await?;
    assert_eq!(ask(&mut early, "join news").await?, "ok", "joins work without Redis");
    let unavailable = format!("error: TopicError::Unavailable(\"Redis at {} is unreachable\")", redis.url());
    assert_eq!(ask(&mut early, "publish news zero").await?, unavailable);

    redis.restart().await?;
    a.logs(&["connected to Redis at"]);
    let b = Host::start(&redis.url());
    b.logs(&["connected to Redis at"]);
    let mut reader = b.connect("/pubsub").await?;
    assert_eq!(ask(&mut reader, "join news").await?, "ok");
    hosts_subscribed(&redis, "news", 2).await?;
    assert_eq!(ask(&mut early, "publish-others news one").await?, "reached 0");
    assert_eq!(receive_text(&mut reader).await?, "one");

    // Redis dies: connections stay, publishes are refused, with a reason.
    redis.kill();
    a.logs(&["lost the connection to Redis at"]);
    b.logs(&["lost the connection to Redis at"]);
    assert_eq!(ask(&mut early, "publish-others news two").await?, unavailable);
    let refused = admin_publish(b.admin, "news", "text/plain", "two", None).await?;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(ask(&mut reader, "join local").await?, "ok", "the connection itself carries on");

    // Redis is back: both hosts reconnect and subscribe again by themselves.
    redis.restart().await?;
    a.logs(&["reconnected to Redis at", "subscribed again to 1 topics"]);
    b.logs(&["reconnected to Redis at", "subscribed again to 2 topics"]);
    hosts_subscribed(&redis, "news", 2).await?;
    assert_eq!(ask(&mut early, "publish-others news three").await?, "reached 0");
    // Nothing published during the outage arrives: the next is `three`.
    assert_eq!(receive_text(&mut reader).await?, "three");
    let published = admin_publish(b.admin, "news", "text/plain", "four", None).await?;
    assert_eq!(published.status, 202);
    assert_eq!(receive_text(&mut early).await?, "four");
    Ok(())
}

#[tokio::test]
async fn publishes_waiting_for_a_stalled_redis_are_bounded_in_bytes() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let host = Host::start(&redis.url());
    host.logs(&["connected to Redis at"]);
    // Stalled, not gone: the host finds out only when its next ping goes
    // unanswered, and meanwhile queues publishes for it.
    redis.signal("STOP")?;
    let megabyte = "x".repeat(1_000_000);
    let mut queued = 0;
    for _ in 0..40 {
        let published = admin_publish(host.admin, "news", "text/plain", &megabyte, None).await?;
        match published.status {
            202 => queued += 1,
            503 => {}
            status => anyhow::bail!("publish answered {status}: {}", published.body),
        }
    }
    redis.signal("CONT")?;
    // 16 MiB wait at most (and one message over it).
    assert!((1..=17).contains(&queued), "{queued} publishes of a megabyte queued for a stalled Redis");
    Ok(())
}
