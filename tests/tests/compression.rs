//! permessage-deflate (RFC 7692) with a raw client that compresses with
//! flate2 and reads the server's frames as they are: negotiation, compressed
//! messages both ways (a streamed reply included), and a decompression bomb
//! against a host in a process of its own, whose memory is watched.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use futures_util::SinkExt;
use std::net::SocketAddr;
use tokio_tungstenite::tungstenite::Message;
use wsplug::RouteConfig;
use wsplug_tests::cli::serve_config;
use wsplug_tests::{RawClient, RawFrame, TestServer, config_with, example, receive_text, resident_bytes};

const TEXT: u8 = 1;
const BINARY: u8 = 2;
const CONTINUATION: u8 = 0;
/// The RSV1 bit, with the opcode of a compressed message's first frame.
const RSV1: u8 = 0x40;

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// `payload` deflated as one message (RFC 7692 section 7.2.1).
fn deflate(payload: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut output = Vec::with_capacity(payload.len() / 2 + 1024);
    let mut input = payload;
    loop {
        let before = compress.total_in();
        output.reserve(64 * 1024);
        compress.compress_vec(input, &mut output, FlushCompress::Sync).unwrap();
        input = &input[(compress.total_in() - before) as usize..];
        if input.is_empty() && output.len() < output.capacity() {
            break;
        }
    }
    assert!(output.ends_with(&[0, 0, 0xff, 0xff]));
    output.truncate(output.len() - 4);
    output
}

/// A whole compressed message, inflated.
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut output = Vec::with_capacity(1 << 20);
    Decompress::new(false).decompress_vec(&input, &mut output, FlushDecompress::Sync).unwrap();
    output
}

fn json(size: usize) -> String {
    let mut text = String::from("[");
    let mut id = 0;
    while text.len() < size {
        text.push_str(&format!("{{\"id\":{id},\"user\":\"peter\",\"text\":\"hello, how are you?\"}},"));
        id += 1;
    }
    text
}

async fn server(compression: bool) -> anyhow::Result<TestServer> {
    let mut echo = RouteConfig::new("/echo", example("echo"));
    echo.compression = compression;
    TestServer::start_with(config_with([echo, RouteConfig::new("/greeter", example("greeter"))])).await
}

#[tokio::test]
async fn an_offer_is_accepted_on_routes_with_compression_and_declined_elsewhere() -> anyhow::Result<()> {
    let on = server(true).await?;
    let (_, head) = RawClient::connect_with(on.address, "/echo", OFFER).await?;
    assert!(head.to_lowercase().contains("sec-websocket-extensions: permessage-deflate\r\n"), "{head}");
    // Asked for a window zlib cannot compress with, then a usable offer.
    let offers = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8, \
                  permessage-deflate; server_no_context_takeover\r\n";
    let (_, head) = RawClient::connect_with(on.address, "/echo", offers).await?;
    assert!(head.contains("permessage-deflate; server_no_context_takeover\r\n"), "{head}");
    let (_, head) = RawClient::connect_with(on.address, "/echo", "").await?;
    assert!(!head.to_lowercase().contains("sec-websocket-extensions"), "{head}");

    let off = server(false).await?;
    let (_, head) = RawClient::connect_with(off.address, "/echo", OFFER).await?;
    assert!(!head.to_lowercase().contains("sec-websocket-extensions"), "{head}");
    Ok(())
}

#[tokio::test]
async fn compressed_messages_go_both_ways_and_small_replies_go_plain() -> anyhow::Result<()> {
    let server = server(true).await?;
    let (mut client, _) = RawClient::connect_with(server.address, "/echo", OFFER).await?;

    // Small: in compressed, out plain (under the threshold).
    client.send_frame(true, RSV1 | TEXT, &deflate(b"Hello")).await?;
    assert_eq!(
        client.read_frame().await?,
        RawFrame { fin: true, rsv1: false, opcode: TEXT, payload: b"Hello".to_vec() }
    );

    // JSON over the threshold, in one frame and in three fragments: the
    // echo comes back compressed, much smaller than the text.
    let text = json(64 * 1024);
    let compressed = deflate(text.as_bytes());
    assert!(compressed.len() * 5 < text.len());
    client.send_frame(true, RSV1 | TEXT, &compressed).await?;
    let (third, rest) = compressed.split_at(compressed.len() / 3);
    let (second, last) = rest.split_at(rest.len() / 2);
    client.send_frame(false, RSV1 | TEXT, third).await?;
    client.send_frame(false, CONTINUATION, second).await?;
    client.send_frame(true, CONTINUATION, last).await?;
    for _ in 0..2 {
        let (payload, wire) = read_message(&mut client).await?;
        assert_eq!(payload, text.as_bytes());
        assert!(wire * 5 < text.len(), "{wire} bytes on the wire");
    }
    // Binary too.
    client.send_frame(true, RSV1 | BINARY, &deflate(&[7; 4096])).await?;
    assert_eq!(read_message(&mut client).await?.0, vec![7; 4096]);
    Ok(())
}

/// The next message from the server, inflated if compressed, with the bytes
/// it took on the wire.
async fn read_message(client: &mut RawClient) -> anyhow::Result<(Vec<u8>, usize)> {
    let first = client.read_frame().await?;
    let compressed = first.rsv1;
    let mut fin = first.fin;
    let mut payload = first.payload;
    while !fin {
        let next = client.read_frame().await?;
        anyhow::ensure!(next.opcode == CONTINUATION && !next.rsv1, "{next:?}");
        fin = next.fin;
        payload.extend(next.payload);
    }
    let wire = payload.len();
    Ok((if compressed { inflate(&payload) } else { payload }, wire))
}

#[tokio::test]
async fn a_streamed_reply_goes_out_compressed_fragment_by_fragment() -> anyhow::Result<()> {
    let server = server(true).await?;
    let (mut client, _) = RawClient::connect_with(server.address, "/greeter", OFFER).await?;
    let name = "Peter ".repeat(2000);
    let compressed = deflate(name.as_bytes());
    client.send_frame(false, RSV1 | TEXT, &compressed[..10]).await?;
    client.send_frame(true, CONTINUATION, &compressed[10..]).await?;
    let first = client.read_frame().await?;
    assert!(first.rsv1 && !first.fin && first.opcode == TEXT, "{first:?}");
    let mut payload = first.payload;
    loop {
        let next = client.read_frame().await?;
        assert!(!next.rsv1 && next.opcode == CONTINUATION, "{next:?}");
        payload.extend(next.payload);
        if next.fin {
            break;
        }
    }
    assert_eq!(String::from_utf8(inflate(&payload))?, format!("Hello {name}!"));
    Ok(())
}

#[tokio::test]
async fn a_decompression_bomb_closes_1009_while_inflating_and_host_memory_stays_flat() -> anyhow::Result<()> {
    let (server, urls, _log) = serve_config(&format!(
        "[[route]]\npath = \"/echo\"\ncomponent = {:?}\nmax-message-size = 1048576\n",
        example("echo")
    ));
    let address: SocketAddr = urls[0].trim_start_matches("ws://").split('/').next().unwrap_or_default().parse()?;
    let process = server.0.id().to_string();
    // 256 MiB of zeros: about 256 KiB on the wire, in one frame.
    let bomb = deflate(&vec![0; 256 << 20]);
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());

    let (mut bystander, _) = tokio_tungstenite::connect_async(urls[0].as_str()).await?;
    let before = resident_bytes(&process);
    let (mut client, _) = RawClient::connect_with(address, "/echo", OFFER).await?;
    client.send_frame(true, RSV1 | BINARY, &bomb).await?;
    // The echo streams back what was inflated before the limit, then the
    // close.
    let close = loop {
        let frame = client.read_frame().await?;
        if frame.opcode == 8 {
            break frame;
        }
    };
    assert_eq!(close.close_code(), Some(1009), "{close:?}");
    let growth = resident_bytes(&process).saturating_sub(before);
    assert!(growth < 16 << 20, "the host grew by {growth} bytes");

    // Others carry on.
    bystander.send(Message::text("still here")).await?;
    assert_eq!(receive_text(&mut bystander).await?, "still here");
    Ok(())
}
