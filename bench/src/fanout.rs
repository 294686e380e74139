//! Fan-out: N subscriber connections to one topic and one publisher, wsplug
//! (the feed component, published to through its admin API) against Bun's
//! `server.publish` (uWebSockets pub/sub, `bench/peers/fanout-bun.js`), with
//! the same client; and two wsplug hosts on one Redis (`redis-server`, when
//! installed), half the subscribers on each, publishing on the first.
//!
//! For each server and each N, a fresh server process: the subscribers
//! connect (spread over [`SUBSCRIBER_TASKS`] tasks) and a probe is
//! published until it reaches all N; then one HTTP/1.1 keep-alive
//! connection publishes at a steady rate, 1 s of warm-up and 5 s measured.
//! Each message carries its publication time, so the subscribers record the
//! latency from publication to delivery. The publication rate is the offered
//! deliveries per second over N, the same load for every N.
//!
//! `WSPLUG_BENCH_FANOUT=1000,10000` sets the subscriber counts (default
//! 1000 and 10000); `WSPLUG_BENCH_FANOUT_RATE=100000` the deliveries offered
//! per second (default 100,000: 100 publications/s to 1000 subscribers, 10/s
//! to 10,000).

use crate::servers::Server;
use crate::{MEASURE, WARM_UP};
use anyhow::Context as _;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use std::ops::Range;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::{self, Message, protocol::WebSocketConfig};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Subscribers connect to `/feed?topic=TOPIC`, which is topic `feed:TOPIC`.
const TOPIC: &str = "bench";

/// The size of a published message: its publication time, padded.
const MESSAGE_SIZE: usize = 32;

/// Published until every subscriber is reached; subscribers skip it.
const PROBE: &str = "probe";

/// Published after the measured window: a subscriber that gets it has had
/// everything before it.
const END: &str = "end";

/// The subscriber connections are spread over this many tasks; each opens
/// its share one after another, then reads them all.
const SUBSCRIBER_TASKS: usize = 64;

/// Memory maps a wsplug connection's instance takes (about 7), rounded up:
/// `vm.max_map_count` limits the subscribers it can have.
const MAPS_PER_INSTANCE: usize = 8;

/// Linux's `EMFILE`: this process has as many files open as it may.
const EMFILE: i32 = 24;

/// Bounds, so that a server that stops answering does not stall the run.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long after the measured window deliveries are still waited for, at
/// most (subscribers stop early once they have [`END`]).
const DRAIN: Duration = Duration::from_secs(2);

const WSPLUG: &str = "wsplug + feed component";
const WSPLUG_REDIS: &str = "2 × wsplug + feed, Redis between";
const BUN: &str = "Bun publish";

/// Runs the fan-out for each subscriber count and prints its table.
pub async fn report() -> anyhow::Result<()> {
    let counts = subscriber_counts()?;
    let offered = crate::setting("WSPLUG_BENCH_FANOUT_RATE", 100_000).max(1);
    let max_map_count: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")?.trim().parse()?;
    let mut notes = Vec::new();
    let mut bun_missing = false;
    println!(
        "Fan-out: one topic, {offered} deliveries/s offered ({MESSAGE_SIZE} B text messages), {} s warm-up, {} s \
         measured; latency from publication to delivery:",
        WARM_UP.as_secs(),
        MEASURE.as_secs(),
    );
    println!();
    println!(
        "| subscribers | server | published/s | delivered/s | delivered % | p50 µs | p99 µs | RSS per subscriber KiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for subscribers in counts {
        let rate = offered as f64 / subscribers as f64;
        if subscribers * MAPS_PER_INSTANCE > max_map_count {
            notes.push(format!(
                "({WSPLUG}, {subscribers} subscribers: left out, each instance maps about {MAPS_PER_INSTANCE} \
                 regions and vm.max_map_count is {max_map_count}; `sysctl -w vm.max_map_count=262144` allows it)"
            ));
        } else {
            let server = Server::wsplug_feed(None).await.context(WSPLUG)?;
            fan_out(&[&server], subscribers, rate).await.context(WSPLUG)?.print(subscribers, WSPLUG);
        }
        // Two hosts on one Redis, half the subscribers on each, all
        // publishes made on the first: half the deliveries cross Redis.
        match Server::redis() {
            None => notes.push(format!("({WSPLUG_REDIS}: redis-server is not installed, left out)")),
            Some(_) if subscribers / 2 * MAPS_PER_INSTANCE > max_map_count => {
                notes.push(format!("({WSPLUG_REDIS}, {subscribers} subscribers: left out, see above)"));
            }
            Some((_redis, url)) => {
                let first = Server::wsplug_feed(Some(&url)).await.context(WSPLUG_REDIS)?;
                let second = Server::wsplug_feed(Some(&url)).await.context(WSPLUG_REDIS)?;
                let figures = fan_out(&[&first, &second], subscribers, rate).await.context(WSPLUG_REDIS)?;
                figures.print(subscribers, WSPLUG_REDIS);
            }
        }
        match Server::peer("node_modules/.bin/bun", "fanout-bun.js").await {
            Some(server) => fan_out(&[&server], subscribers, rate).await.context(BUN)?.print(subscribers, BUN),
            None => bun_missing = true,
        }
    }
    if bun_missing {
        notes.push(format!("({BUN}: not installed in bench/peers, left out)"));
    }
    for note in notes {
        println!("{note}");
    }
    Ok(())
}

/// `WSPLUG_BENCH_FANOUT`, a comma-separated list, or 1000 and 10,000.
fn subscriber_counts() -> anyhow::Result<Vec<usize>> {
    let Ok(list) = std::env::var("WSPLUG_BENCH_FANOUT") else { return Ok(vec![1000, 10_000]) };
    let counts = list
        .split(',')
        .map(|count| count.trim().parse())
        .collect::<Result<Vec<usize>, _>>()
        .context("WSPLUG_BENCH_FANOUT: subscriber counts, separated by commas")?;
    anyhow::ensure!(counts.iter().all(|&count| count > 0), "WSPLUG_BENCH_FANOUT: a count of 0");
    Ok(counts)
}

/// One fan-out run's figures.
struct FanOut {
    /// Messages published within the measured window.
    published: u64,
    /// Deliveries of those messages that arrived.
    delivered: u64,
    /// From publication to delivery, µs.
    latency: Histogram<u64>,
    /// The server's resident memory per subscriber, in bytes.
    resident_per_subscriber: f64,
}

impl FanOut {
    fn print(&self, subscribers: usize, server: &str) {
        let seconds = MEASURE.as_secs_f64();
        println!(
            "| {subscribers} | {server} | {:.0} | {:.0} | {:.1} | {} | {} | {:.1} |",
            self.published as f64 / seconds,
            self.delivered as f64 / seconds,
            100.0 * self.delivered as f64 / (self.published as f64 * subscribers as f64),
            self.latency.value_at_quantile(0.5),
            self.latency.value_at_quantile(0.99),
            self.resident_per_subscriber / 1024.0,
        );
    }
}

/// `subscribers` connections to the feeds of `servers` (shared out evenly),
/// all on one topic, and `rate` publications a second to it, made on the
/// first server. The servers' memory is read before the subscribers connect
/// and once all are subscribed.
async fn fan_out(servers: &[&Server], subscribers: usize, rate: f64) -> anyhow::Result<FanOut> {
    let resident = || servers.iter().map(|server| server.resident_bytes()).sum::<anyhow::Result<u64>>();
    let before = resident()?;
    let topic = format!("feed:{TOPIC}");
    let mut groups = Vec::new();
    let mut shares = Vec::new();
    for (index, server) in servers.iter().enumerate() {
        let share = subscribers / servers.len() + usize::from(index < subscribers % servers.len());
        let url = server.url(&format!("/feed?topic={TOPIC}"));
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, connect(&url, share))
            .await
            .with_context(|| format!("{share} connections took longer than {CONNECT_TIMEOUT:?}"))??;
        groups.extend(connected);
        shares.push(share);
    }
    // Each server counts the subscribers it has itself.
    for (server, share) in servers.iter().zip(shares) {
        Publisher::connect(server.publish_address(), &topic).await?.wait_for(share).await?;
    }
    let mut publisher = Publisher::connect(servers[0].publish_address(), &topic).await?;
    // Let the servers finish setting the last ones up, as for idle
    // connections (and subscribe on Redis, when there is one).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = resident()?;
    let epoch = Instant::now();
    let window = micros(WARM_UP)..micros(WARM_UP + MEASURE);
    let stop = epoch + WARM_UP + MEASURE + DRAIN;
    let readers: Vec<_> =
        groups.into_iter().map(|sockets| tokio::spawn(receive(sockets, epoch, window.clone(), stop))).collect();
    let published = publisher.publish_steadily(rate, epoch, &window).await?;
    let mut delivered = 0;
    let mut latency = Histogram::<u64>::new(3)?;
    for reader in readers {
        let deliveries = reader.await??;
        delivered += deliveries.count;
        latency.add(deliveries.latency)?;
    }
    let resident_per_subscriber = after.saturating_sub(before) as f64 / subscribers as f64;
    Ok(FanOut { published, delivered, latency, resident_per_subscriber })
}

/// Opens `count` connections to `url`, spread over [`SUBSCRIBER_TASKS`]
/// tasks; returns each task's share.
async fn connect(url: &str, count: usize) -> anyhow::Result<Vec<Vec<Socket>>> {
    // Subscribers only read short messages: 4 KiB of read buffer instead of
    // tungstenite's 128 KiB keeps this process small with 10,000 of them.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let tasks: Vec<_> = (0..SUBSCRIBER_TASKS)
        .map(move |task| {
            let share = count / SUBSCRIBER_TASKS + usize::from(task < count % SUBSCRIBER_TASKS);
            let url = url.to_owned();
            tokio::spawn(async move {
                let mut sockets = Vec::with_capacity(share);
                for _ in 0..share {
                    let (socket, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), false)
                        .await
                        .map_err(connect_error)?;
                    sockets.push(socket);
                }
                anyhow::Ok(sockets)
            })
        })
        .collect();
    let mut groups = Vec::with_capacity(SUBSCRIBER_TASKS);
    for task in tasks {
        groups.push(task.await??);
    }
    Ok(groups)
}

/// A failed connection, with advice when this process ran out of file
/// descriptors (one per subscriber).
fn connect_error(error: tungstenite::Error) -> anyhow::Error {
    let out_of_files = matches!(&error, tungstenite::Error::Io(io) if io.raw_os_error() == Some(EMFILE));
    let error = anyhow::Error::new(error);
    if out_of_files {
        error.context("out of file descriptors: the client takes one per subscriber; raise `ulimit -n`")
    } else {
        error
    }
}

/// What one task's subscribers got of the messages published within the
/// measured window.
struct Deliveries {
    count: u64,
    latency: Histogram<u64>,
}

/// Reads `sockets` until each has had [`END`], or until `stop`, counting
/// the messages published within `window` (µs since `epoch`) and recording
/// how long after their publication they arrived; then closes them.
async fn receive(
    sockets: Vec<Socket>,
    epoch: Instant,
    window: Range<u64>,
    stop: Instant,
) -> anyhow::Result<Deliveries> {
    let mut unfinished = sockets.len();
    let mut sockets = futures_util::stream::select_all(sockets);
    let mut deliveries = Deliveries { count: 0, latency: Histogram::new(3)? };
    while unfinished > 0 {
        let Ok(next) = tokio::time::timeout_at(stop.into(), sockets.next()).await else { break };
        match next.context("every subscriber connection ended")?? {
            Message::Text(text) if text.as_str() == PROBE => {}
            Message::Text(text) if text.as_str() == END => unfinished -= 1,
            Message::Text(text) => {
                let published: u64 =
                    text.trim_end().parse().with_context(|| format!("unexpected message {:?}", text.as_str()))?;
                if window.contains(&published) {
                    deliveries.count += 1;
                    deliveries.latency.record(micros(epoch.elapsed()).saturating_sub(published))?;
                }
            }
            other @ (Message::Binary(_) | Message::Close(_)) => anyhow::bail!("a subscriber got {other:?}"),
            // Pings and pongs.
            _ => {}
        }
    }
    for mut socket in sockets {
        socket.close(None).await.ok();
    }
    Ok(deliveries)
}

fn micros(duration: Duration) -> u64 {
    duration.as_micros() as u64
}

/// One HTTP/1.1 keep-alive connection that publishes to a topic: `POST
/// /topics/TOPIC` with the message as a text body, answered with `202` and
/// `{"reached":N}`.
struct Publisher {
    connection: BufReader<TcpStream>,
    address: String,
    path: String,
}

impl Publisher {
    async fn connect(address: &str, topic: &str) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(address).await.with_context(|| format!("cannot connect to {address}"))?;
        tcp.set_nodelay(true)?;
        Ok(Self { connection: BufReader::new(tcp), address: address.to_owned(), path: format!("/topics/{topic}") })
    }

    /// Publishes [`PROBE`] until it reaches `subscribers` connections: all
    /// have connected and subscribed.
    async fn wait_for(&mut self, subscribers: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
        loop {
            let reached = self.publish(PROBE).await?;
            if reached >= subscribers {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{reached} of {subscribers} subscribed after {SUBSCRIBE_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes `rate` times a second from `epoch` to the end of `window`
    /// (µs since `epoch`), each message its publication time padded to
    /// [`MESSAGE_SIZE`], then [`END`]. A publication that takes longer than
    /// the period delays the next and skips the ticks missed. Returns how
    /// many were published within `window`.
    async fn publish_steadily(&mut self, rate: f64, epoch: Instant, window: &Range<u64>) -> anyhow::Result<u64> {
        let mut ticks = tokio::time::interval_at(epoch.into(), Duration::from_secs_f64(1.0 / rate));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let end = epoch + Duration::from_micros(window.end);
        let mut published = 0;
        while tokio::time::timeout_at(end.into(), ticks.tick()).await.is_ok() {
            let now = micros(epoch.elapsed());
            if now >= window.end {
                break;
            }
            self.publish(&format!("{now:<MESSAGE_SIZE$}")).await?;
            published += u64::from(window.contains(&now));
        }
        self.publish(END).await?;
        Ok(published)
    }

    /// Publishes `text`; returns how many connections it reached.
    async fn publish(&mut self, text: &str) -> anyhow::Result<usize> {
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
            self.path,
            self.address,
            text.len(),
        );
        let connection = &mut self.connection;
        let exchange = async {
            connection.write_all(request.as_bytes()).await?;
            let mut status = String::new();
            connection.read_line(&mut status).await?;
            let mut length: Option<usize> = None;
            loop {
                let mut header = String::new();
                connection.read_line(&mut header).await?;
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = Some(value.trim().parse()?);
                }
            }
            let mut body = vec![0; length.context("a publish answer without Content-Length")?];
            connection.read_exact(&mut body).await?;
            anyhow::Ok((status, String::from_utf8(body)?))
        };
        let (status, body) = tokio::time::timeout(PUBLISH_TIMEOUT, exchange)
            .await
            .with_context(|| format!("no answer to a publish within {PUBLISH_TIMEOUT:?}"))??;
        anyhow::ensure!(status.split_whitespace().nth(1) == Some("202"), "a publish got {} {body}", status.trim_end());
        body.split_once("\"reached\"")
            .and_then(|(_, rest)| rest.trim_start().strip_prefix(':'))
            .and_then(|rest| rest.trim_start().split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse().ok())
            .with_context(|| format!("no \"reached\" count in the publish answer {body:?}"))
    }
}
