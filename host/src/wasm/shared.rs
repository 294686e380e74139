//! Instances that serve many connections at once (`instance = "shared"`):
//! each connection is a concurrent call of the handler's async export on
//! one instance, so state in the instance is shared between its connections
//! (a chat room in memory), and so is failure.
//!
//! ```text
//!  connection ──Serve(call)──┐
//!  connection ──Serve(call)──┼─(mpsc)─▶ driver task: the store's event loop,
//!  upgrade ───Decide(req)────┘          every call in flight on one instance
//!  connection ◀──(oneshot)── done / decision
//! ```
//!
//! A route has a fixed number of slots (`shared-instances`); connections
//! take them in turn. An instance starts with its slot's first connection
//! and lives on while it has none. If any call traps (or runs out of CPU or
//! memory), the instance is unusable: every connection on it ends with
//! [`SharedInstanceFailed`] (closed with 1011), and the slot's next
//! connection starts a fresh instance.

use super::bindings::{Decision, HandshakeHandler, HandshakeRequest};
use super::call::{self, Call};
use super::log::LogSource;
use super::runtime::{ConnectionCtx, GuestInstance, GuestStatus, Handler, HandlerExports};
use crate::topics::TopicsCtx;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use wasmtime::component::Accessor;

/// A route's shared instances.
pub struct SharedInstances {
    handler: Handler,
    path: String,
    slots: Vec<Mutex<Option<Arc<Shared>>>>,
    next: AtomicUsize,
}

/// One running shared instance: where its requests go, and how it ended.
struct Shared {
    requests: mpsc::UnboundedSender<Request>,
    ended: watch::Receiver<Option<SharedInstanceFailed>>,
}

impl Shared {
    fn is_live(&self) -> bool {
        !self.requests.is_closed() && self.ended.borrow().is_none()
    }
}

/// What a connection asks of a shared instance.
enum Request {
    /// Decide a handshake with the handler's `handshake` export.
    Decide { request: HandshakeRequest, answer: oneshot::Sender<Option<Decision>> },
    /// Serve a connection until the handler's output ends.
    Serve { call: Call, done: oneshot::Sender<()> },
}

/// Why a connection on a shared instance ended with a failure: the instance
/// failed, in this connection's call or in another's.
#[derive(Clone, Debug)]
pub struct SharedInstanceFailed {
    /// The instance's number in the logs.
    pub instance: u64,
    /// What made it fail, as the metrics count it: `trap`, `cpu-budget` or
    /// `memory`.
    pub cause: &'static str,
    /// What wasmtime said.
    pub message: String,
}

impl std::fmt::Display for SharedInstanceFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shared instance {} failed: {}", self.instance, self.message)
    }
}

impl std::error::Error for SharedInstanceFailed {}

impl SharedInstances {
    /// `count` slots for instances of `handler`, serving `path`.
    pub fn new(handler: Handler, path: &str, count: usize) -> Self {
        let slots = (0..count.max(1)).map(|_| Mutex::new(None)).collect();
        Self { handler, path: path.to_owned(), slots, next: AtomicUsize::new(0) }
    }

    /// A lease on the next slot's instance; if the slot has none, or its
    /// instance failed, a new one numbered and with the topics `new` gives.
    pub async fn lease(&self, new: impl FnOnce() -> (u64, TopicsCtx)) -> wasmtime::Result<Lease> {
        let handshake = self.handler.has_handshake();
        // Held while an instance starts: the slot's other connections wait
        // for that one instead of each starting their own.
        let mut slot = self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()].lock().await;
        if let Some(instance) = slot.as_ref().filter(|instance| instance.is_live()) {
            return Ok(Lease { instance: instance.clone(), handshake });
        }
        let (id, topics) = new();
        let guest = self.handler.instantiate(LogSource::SharedInstance(id), &self.path, topics).await?;
        let (requests, receiver) = mpsc::unbounded_channel();
        let (ended_tx, ended) = watch::channel(None);
        tokio::spawn(drive(guest, receiver, ended_tx, id, self.path.clone()));
        tracing::info!(instance = id, path = self.path, "shared instance started");
        let instance = Arc::new(Shared { requests, ended });
        *slot = Some(instance.clone());
        Ok(Lease { instance, handshake })
    }
}

/// A connection's hold on a shared instance.
pub struct Lease {
    instance: Arc<Shared>,
    /// Whether the handler exports `handshake`.
    handshake: bool,
}

impl Lease {
    /// The handler's decision on `request` (made only if it is needed), if
    /// it exports `handshake`.
    pub(crate) async fn decide(
        &self,
        request: impl FnOnce() -> HandshakeRequest,
    ) -> wasmtime::Result<Option<Decision>> {
        if !self.handshake {
            return Ok(None);
        }
        let (answer, answered) = oneshot::channel();
        if self.instance.requests.send(Request::Decide { request: request(), answer }).is_ok()
            && let Ok(decision) = answered.await
        {
            return Ok(decision);
        }
        Err(self.failure().await)
    }

    /// Serves the connection until the handler's output ends.
    pub(crate) async fn serve(self, call: Call) -> wasmtime::Result<()> {
        let (done, finished) = oneshot::channel();
        if self.instance.requests.send(Request::Serve { call, done }).is_ok() && finished.await.is_ok() {
            return Ok(());
        }
        Err(self.failure().await)
    }

    /// Why the instance stopped answering.
    async fn failure(&self) -> wasmtime::Error {
        let mut ended = self.instance.ended.clone();
        let failure = match ended.wait_for(Option::is_some).await {
            Ok(failure) => failure.clone(),
            // The driver's task is gone without saying why: it panicked.
            Err(_) => None,
        };
        wasmtime::Error::new(failure.unwrap_or_else(|| SharedInstanceFailed {
            instance: 0,
            cause: "trap",
            message: "its task ended unexpectedly".into(),
        }))
    }
}

/// Runs a shared instance: answers its requests, each a concurrent call on
/// the one store, until every sender is gone (the route was replaced and
/// its connections ended) or a call fails. Then `ended` says why.
async fn drive(
    instance: GuestInstance,
    mut requests: mpsc::UnboundedReceiver<Request>,
    ended: watch::Sender<Option<SharedInstanceFailed>>,
    id: u64,
    path: String,
) {
    let GuestInstance { mut store, exports, handshake } = instance;
    let served = store
        .run_concurrent(async |accessor| {
            let mut calls = FuturesUnordered::new();
            loop {
                tokio::select! {
                    request = requests.recv() => match request {
                        Some(request) => calls.push(answer(accessor, &exports, handshake.as_ref(), request)),
                        None => break,
                    },
                    Some(answered) = calls.next() => answered?,
                }
            }
            while let Some(answered) = calls.next().await {
                answered?;
            }
            wasmtime::Result::<()>::Ok(())
        })
        .await;
    let (Ok(Err(err)) | Err(err)) = served else {
        tracing::debug!(instance = id, path, "shared instance ended");
        return;
    };
    // Before the store goes, cutting the bodies still open.
    store.data().failed().store(true, Ordering::Release);
    let cause = crate::metrics::failure_cause(&err);
    tracing::warn!(instance = id, path, cause = %err.root_cause(), "shared instance failed: its connections close with 1011");
    tracing::debug!(instance = id, "shared instance failure in full: {err:?}");
    ended.send_replace(Some(SharedInstanceFailed { instance: id, cause, message: err.root_cause().to_string() }));
}

/// Answers one request on the shared instance. `Err` is the instance
/// failing: the driver stops, and every connection on it learns why.
async fn answer(
    accessor: &Accessor<ConnectionCtx>,
    exports: &HandlerExports,
    handshake: Option<&HandshakeHandler>,
    request: Request,
) -> wasmtime::Result<()> {
    match request {
        Request::Decide { request, answer } => {
            let decision = match handshake {
                Some(handshake) => Some(handshake.wsplug_websocket_handshake().call_decide(accessor, request).await?),
                None => None,
            };
            let _ = answer.send(decision);
        }
        Request::Serve { call, done } => {
            // Run to its end even if the connection is gone (closed at a
            // deadline, say): the guest's input has ended and its output
            // is refused, so a handler that stops when they do ends. Dropping
            // the call would leave its task and streams in the store.
            call::handle(accessor, exports, call).await?;
            let _ = done.send(());
        }
    }
    Ok(())
}
