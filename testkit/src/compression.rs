//! permessage-deflate for the probe: tungstenite's client cannot compress,
//! so when the app accepts the extension, the probe's frames pass through a
//! pair of pumps that do what a compressing client does.
//!
//! ```text
//!  probe (tungstenite) ──plain frames──▶ outbound: deflate, RSV1 on the first frame ──▶ app
//!  probe (tungstenite) ◀──plain frames── inbound: inflate RSV1 messages ◀──────────────── app
//! ```
//!
//! Every data message the probe sends goes out compressed, each fragment as
//! it comes; control frames pass as they are.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use wsplug_wire::deflate::{DeflateParams, Deflater, Inflater};

/// The probe's side of a compressing connection over `app` (the upgraded
/// connection).
pub(crate) fn compressing<T>(app: T) -> DuplexStream
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    // The client side of RFC 7692: any window is fine for both, context
    // reset after every message the probe sends.
    let params = DeflateParams { client_no_context_takeover: false, server_max_window_bits: 15 };
    let (probe, shim) = tokio::io::duplex(256 * 1024);
    let (from_app, to_app) = tokio::io::split(app);
    let (from_probe, to_probe) = tokio::io::split(shim);
    tokio::spawn(outbound(from_probe, to_app, Deflater::new(params)));
    tokio::spawn(inbound(from_app, to_probe, Inflater::new(params)));
    probe
}

/// One frame as read, its payload unmasked.
struct Frame {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload: Vec<u8>,
}

async fn read_frame(input: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Frame> {
    let first = input.read_u8().await?;
    let second = input.read_u8().await?;
    let length = match second & 0x7f {
        126 => u64::from(input.read_u16().await?),
        127 => input.read_u64().await?,
        length => u64::from(length),
    };
    let mask = if second & 0x80 != 0 {
        let mut key = [0; 4];
        input.read_exact(&mut key).await?;
        Some(key)
    } else {
        None
    };
    let mut payload = vec![0; usize::try_from(length).map_err(std::io::Error::other)?];
    input.read_exact(&mut payload).await?;
    if let Some(key) = mask {
        payload.iter_mut().enumerate().for_each(|(at, byte)| *byte ^= key[at % 4]);
    }
    Ok(Frame { fin: first & 0x80 != 0, rsv1: first & 0x40 != 0, opcode: first & 0x0f, mask, payload })
}

async fn write_frame(output: &mut (impl AsyncWrite + Unpin), frame: &Frame) -> std::io::Result<()> {
    let mut bytes = vec![u8::from(frame.fin) << 7 | u8::from(frame.rsv1) << 6 | frame.opcode];
    let masked = if frame.mask.is_some() { 0x80 } else { 0 };
    match frame.payload.len() {
        length @ 0..=125 => bytes.push(masked | length as u8),
        length @ 126..=0xffff => {
            bytes.push(masked | 126);
            bytes.extend_from_slice(&(length as u16).to_be_bytes());
        }
        length => {
            bytes.push(masked | 127);
            bytes.extend_from_slice(&(length as u64).to_be_bytes());
        }
    }
    match frame.mask {
        Some(key) => {
            bytes.extend_from_slice(&key);
            bytes.extend(frame.payload.iter().enumerate().map(|(at, byte)| byte ^ key[at % 4]));
        }
        None => bytes.extend_from_slice(&frame.payload),
    }
    output.write_all(&bytes).await?;
    output.flush().await
}

/// Whether `opcode` is a data frame's (text, binary, continuation).
fn is_data(opcode: u8) -> bool {
    opcode < 8
}

/// The probe's frames to the app: data compressed, the first frame of each
/// message with RSV1.
async fn outbound(mut probe: impl AsyncRead + Unpin, mut app: impl AsyncWrite + Unpin, mut deflater: Deflater) {
    while let Ok(mut frame) = read_frame(&mut probe).await {
        if is_data(frame.opcode) {
            frame.rsv1 = frame.opcode != 0;
            frame.payload = deflater.deflate(&frame.payload, frame.fin);
        }
        if write_frame(&mut app, &frame).await.is_err() {
            break;
        }
    }
    let _ = app.shutdown().await;
}

/// The app's frames to the probe: compressed messages inflated, each frame
/// into one of the same place in the message.
async fn inbound(mut app: impl AsyncRead + Unpin, mut probe: impl AsyncWrite + Unpin, mut inflater: Inflater) {
    let mut compressed = false;
    while let Ok(mut frame) = read_frame(&mut app).await {
        if is_data(frame.opcode) {
            if frame.opcode != 0 {
                compressed = frame.rsv1;
            }
            if compressed {
                let mut input = BytesMut::from(&frame.payload[..]);
                if frame.fin {
                    input.extend_from_slice(Inflater::message_tail());
                }
                let mut inflated = Vec::new();
                loop {
                    let Ok(piece) = inflater.inflate(&mut input, 64 * 1024) else { return };
                    inflated.extend_from_slice(&piece);
                    if piece.len() < 64 * 1024 {
                        break;
                    }
                }
                if frame.fin {
                    inflater.end_message();
                }
                frame.rsv1 = false;
                frame.payload = inflated;
            }
        }
        if write_frame(&mut probe, &frame).await.is_err() {
            break;
        }
    }
    let _ = probe.shutdown().await;
}
