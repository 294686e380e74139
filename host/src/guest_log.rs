//! A guest's stdout and stderr, sent to the host's log a line at a time,
//! tagged with the route and the connection (target `wsplug::guest`).

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A line longer than this is logged in pieces of this size.
const MAX_LINE: usize = 4096;

/// Where one guest stream's lines go.
#[derive(Clone)]
pub struct GuestLog {
    connection: u64,
    path: Arc<str>,
    stream: &'static str,
}

impl GuestLog {
    /// Lines of `stream` ("stdout" or "stderr") of the guest serving
    /// `connection` on `path`.
    pub fn new(connection: u64, path: Arc<str>, stream: &'static str) -> Self {
        Self { connection, path, stream }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter { log: self.clone(), line: Vec::new() })
    }

    // Logging never blocks, so WASI 0.2 writes are done on the spot: the
    // default adapter writes from a task of its own, whose last lines are
    // lost if the instance ends right after printing.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter { log: self.clone(), line: Vec::new() })
    }
}

/// Collects bytes into lines and logs each complete one.
struct LineWriter {
    log: GuestLog,
    line: Vec<u8>,
}

impl LineWriter {
    fn push(&mut self, data: &[u8]) {
        for &byte in data {
            if byte == b'\n' {
                self.emit();
            } else {
                self.line.push(byte);
                if self.line.len() >= MAX_LINE {
                    self.emit();
                }
            }
        }
    }

    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.line);
        let GuestLog { connection, path, stream } = &self.log;
        tracing::info!(target: "wsplug::guest", connection, path = &**path, stream, "{}", line.trim_end_matches('\r'));
        self.line.clear();
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.push(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A partial last line is logged when the writer is dropped.
        Poll::Ready(Ok(()))
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}
