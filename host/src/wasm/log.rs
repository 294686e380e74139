//! A guest's stdout and stderr, sent to the host's log a line at a time,
//! tagged with the route and the connection, or the instance for a shared
//! one (target `wsplug::guest`), and rate-limited per instance so that a
//! chatty guest cannot flood the log.

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A line longer than this is logged in pieces of this size.
const MAX_LINE: usize = 4096;

/// Lines a connection's guest may log in a burst...
const BURST_LINES: f64 = 100.0;

/// ...and per second after that; the rest are counted and reported.
const LINES_PER_SECOND: f64 = 10.0;

/// Whose guest a log is for: its lines carry `connection=N` or
/// `instance=N`, so that grepping for a connection finds its own lines only.
#[derive(Clone, Copy)]
pub enum LogSource {
    /// The instance of this connection alone.
    Connection(u64),
    /// A shared instance, serving many connections (`instance = "shared"`).
    SharedInstance(u64),
}

/// Logs an event of the `wsplug::guest` target at `level`, tagged with the
/// source, then the other fields and message as `tracing`'s macros take them.
macro_rules! guest_event {
    ($level:ident, $source:expr, $($rest:tt)*) => {
        match $source {
            LogSource::Connection(connection) => tracing::$level!(target: "wsplug::guest", connection, $($rest)*),
            LogSource::SharedInstance(instance) => tracing::$level!(target: "wsplug::guest", instance, $($rest)*),
        }
    };
}

/// Where one guest stream's lines go.
#[derive(Clone)]
pub struct GuestLog {
    source: LogSource,
    path: Arc<str>,
    stream: &'static str,
    budget: Arc<Mutex<LineBudget>>,
}

impl GuestLog {
    /// The stdout and the stderr of the guest of `source` on `path`,
    /// sharing one rate limit.
    pub fn pair(source: LogSource, path: &str) -> (Self, Self) {
        let path: Arc<str> = path.into();
        let budget = Arc::new(Mutex::new(LineBudget::new(source, path.clone())));
        let stdout = Self { source, path, stream: "stdout", budget };
        let stderr = Self { stream: "stderr", ..stdout.clone() };
        (stdout, stderr)
    }
}

/// A token bucket of log lines; what it drops is reported with the next
/// line let through, or when the guest is gone.
struct LineBudget {
    tokens: f64,
    refilled: Instant,
    dropped: u64,
    source: LogSource,
    path: Arc<str>,
}

impl Drop for LineBudget {
    fn drop(&mut self) {
        self.report(self.dropped);
    }
}

impl LineBudget {
    fn new(source: LogSource, path: Arc<str>) -> Self {
        Self { tokens: BURST_LINES, refilled: Instant::now(), dropped: 0, source, path }
    }

    fn report(&self, dropped: u64) {
        if dropped > 0 {
            let path = &*self.path;
            guest_event!(warn, self.source, path, "{dropped} lines of guest output dropped (rate limit)");
        }
    }

    /// Whether a line may be logged now; if so, also how many were dropped
    /// since the last one that was.
    fn take(&mut self) -> Option<u64> {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * LINES_PER_SECOND;
        self.tokens = (self.tokens + earned).min(BURST_LINES);
        self.refilled = now;
        if self.tokens < 1.0 {
            self.dropped += 1;
            return None;
        }
        self.tokens -= 1.0;
        Some(std::mem::take(&mut self.dropped))
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
        let GuestLog { source, path, stream, budget } = &self.log;
        let mut budget = budget.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(dropped) = budget.take() {
            budget.report(dropped);
            let line = String::from_utf8_lossy(&self.line);
            guest_event!(info, *source, path = &**path, stream, "{}", line.trim_end_matches('\r'));
        }
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
