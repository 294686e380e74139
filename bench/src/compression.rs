//! permessage-deflate: 2 KiB JSON messages echoed with compression on and
//! off, wsplug against Bun and Node `ws` with theirs on. tokio-tungstenite
//! cannot compress, so this client is a small one of its own: the opening
//! handshake with the offer, masked frames, flate2 either way (its own
//! compressor reset per message; the server's messages inflated with the
//! context kept, as the servers keep theirs by default).

use crate::servers::Server;
use anyhow::Context as _;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The size of one message: JSON, as chat and dashboards send.
const MESSAGE: usize = 2048;
const CONNECTIONS: usize = 64;
const OPEN_CONNECTIONS: usize = 500;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

pub async fn report() -> anyhow::Result<()> {
    println!(
        "Compression: {CONNECTIONS} connections echoing {MESSAGE} B JSON messages, one in flight each; bytes on the wire \
         per message both ways; RSS per open connection after one message each ({OPEN_CONNECTIONS} open):"
    );
    println!();
    println!("| server | permessage-deflate | msg/s | p99 µs | wire bytes per message | RSS per open connection |");
    println!("|---|---|---|---|---|---|");
    for deflate in [false, true] {
        let route = format!(
            "[[route]]\npath = \"/echo\"\ncomponent = {:?}\ncompression = {deflate}\n",
            crate::servers::root().join("guest-examples/target/wasm32-wasip2/release/echo.wasm")
        );
        let wsplug = Server::wsplug_serving(&route, false)?;
        row("wsplug + echo", &wsplug, "/echo", deflate).await?;
        let env = [("PEER_DEFLATE", if deflate { "1" } else { "0" })];
        for (name, program, script) in
            [("Bun", "node_modules/.bin/bun", "echo-bun.js"), ("Node ws", "node", "echo-node.mjs")]
        {
            match Server::peer_with(program, script, &env).await {
                Some(server) => row(name, &server, "/", deflate).await?,
                None => println!("({name}: not installed in bench/peers, left out)"),
            }
        }
    }
    println!();
    Ok(())
}

async fn row(name: &str, server: &Server, path: &str, deflate: bool) -> anyhow::Result<()> {
    let address = server.url(path).trim_start_matches("ws://").split('/').next().context("an address")?.to_owned();
    // Memory first, on a fresh server.
    let before = server.resident_bytes()?;
    let mut open = Vec::with_capacity(OPEN_CONNECTIONS);
    for _ in 0..OPEN_CONNECTIONS {
        let mut client = Client::connect(&address, path, deflate).await?;
        client.round_trip(&json(0)).await?;
        open.push(client);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let per_connection = server.resident_bytes()?.saturating_sub(before) as f64 / OPEN_CONNECTIONS as f64;
    drop(open);

    let start = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..CONNECTIONS {
        let mut client = Client::connect(&address, path, deflate).await?;
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3)?;
            let (mut count, mut wire) = (0u64, 0u64);
            let mut id = task * 1_000_000;
            while start.elapsed() < WARM_UP + MEASURE {
                id += 1;
                let sent_at = Instant::now();
                let bytes = client.round_trip(&json(id)).await?;
                if sent_at.duration_since(start) >= WARM_UP {
                    latency.record(sent_at.elapsed().as_micros() as u64)?;
                    count += 1;
                    wire += bytes as u64;
                }
            }
            anyhow::Ok((count, wire, latency))
        }));
    }
    let (mut count, mut wire) = (0, 0);
    let mut latency = Histogram::<u64>::new(3)?;
    for task in tasks {
        let (messages, bytes, histogram) = task.await??;
        count += messages;
        wire += bytes;
        latency.add(histogram)?;
    }
    println!(
        "| {name} | {} | {:.0} | {} | {:.0} | {:.1} KiB |",
        if deflate { "on" } else { "off" },
        count as f64 / MEASURE.as_secs_f64(),
        latency.value_at_quantile(0.99),
        wire as f64 / count.max(1) as f64,
        per_connection / 1024.0
    );
    Ok(())
}

/// A JSON text of [`MESSAGE`] bytes, different for each `id`.
fn json(id: usize) -> String {
    let mut text = format!("{{\"id\":{id},\"items\":[");
    let mut item = 0;
    while text.len() < MESSAGE - 80 {
        text.push_str(&format!("{{\"n\":{item},\"user\":\"ann\",\"text\":\"hello, how is it going?\"}},"));
        item += 1;
    }
    text.truncate(text.len() - 1);
    text.push_str("]}");
    text.extend(std::iter::repeat_n(' ', MESSAGE - text.len()));
    text
}

/// One connection of this client.
struct Client {
    tcp: BufReader<TcpStream>,
    /// The server's messages' inflater, if compression was negotiated.
    inflate: Option<Decompress>,
}

impl Client {
    /// Connects, offering permessage-deflate if `deflate`; it is on if the
    /// server accepts.
    async fn connect(address: &str, path: &str, deflate: bool) -> anyhow::Result<Self> {
        let mut tcp = TcpStream::connect(address).await?;
        tcp.set_nodelay(true)?;
        let offer =
            if deflate { "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" } else { "" };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{offer}\r\n"
        );
        tcp.write_all(request.as_bytes()).await?;
        let mut tcp = BufReader::new(tcp);
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            anyhow::ensure!(tcp.read_line(&mut head).await? > 0, "connection closed in the handshake");
        }
        anyhow::ensure!(head.starts_with("HTTP/1.1 101"), "handshake refused: {head}");
        let accepted = head.to_ascii_lowercase().contains("permessage-deflate");
        anyhow::ensure!(accepted == deflate, "permessage-deflate offered: {deflate}, accepted: {accepted}");
        Ok(Self { tcp, inflate: deflate.then(|| Decompress::new(false)) })
    }

    /// Sends `text` and reads the echo; returns the bytes both took on the
    /// wire, headers included.
    async fn round_trip(&mut self, text: &str) -> anyhow::Result<usize> {
        let compress = self.inflate.is_some() && text.len() >= 1024;
        let payload = if compress { deflate(text.as_bytes()) } else { text.as_bytes().to_vec() };
        let mut frame = vec![0x80 | if compress { 0x40 } else { 0 } | 1];
        match payload.len() {
            len @ 0..=125 => frame.push(0x80 | len as u8),
            len => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
        }
        // A zero mask: masking is the same work for every server.
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(&payload);
        self.tcp.get_mut().write_all(&frame).await?;

        let (first, second) = (self.tcp.read_u8().await?, self.tcp.read_u8().await?);
        let length = match second & 0x7f {
            126 => usize::from(self.tcp.read_u16().await?),
            127 => usize::try_from(self.tcp.read_u64().await?)?,
            length => usize::from(length),
        };
        anyhow::ensure!(first & 0x80 != 0, "a fragmented reply");
        let mut reply = vec![0; length];
        self.tcp.read_exact(&mut reply).await?;
        let received = 2 + if length > 125 { 2 } else { 0 } + length;
        let reply = match (&mut self.inflate, first & 0x40 != 0) {
            (Some(inflate), true) => {
                reply.extend_from_slice(&TAIL);
                let mut inflated = Vec::with_capacity(text.len() + 64);
                inflate.decompress_vec(&reply, &mut inflated, FlushDecompress::Sync)?;
                inflated
            }
            _ => reply,
        };
        anyhow::ensure!(reply == text.as_bytes(), "the echo differs");
        Ok(frame.len() + received)
    }
}

/// `payload` deflated as one message, with a fresh compressor.
fn deflate(payload: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut output = Vec::with_capacity(payload.len() + 64);
    compress.compress_vec(payload, &mut output, FlushCompress::Sync).expect("deflating memory does not fail");
    output.truncate(output.len().saturating_sub(TAIL.len()));
    output
}
