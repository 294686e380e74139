//! The host's figures in Prometheus text format (`GET /metrics` on the admin
//! listener), labelled by route.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `wsplug_connections_open` | route | WebSocket connections open now |
//! | `wsplug_connections_accepted_total` | route | upgrades accepted |
//! | `wsplug_connections_refused_total` | route, reason | upgrades refused: `not-websocket` (4xx for a bad upgrade), `origin` (403), `rate-limit` (429), `capacity` (503), `handshake` (the handler said no), `instantiation` (500) |
//! | `wsplug_messages_in_total`, `wsplug_bytes_in_total` | route | messages and payload bytes from clients |
//! | `wsplug_messages_out_total`, `wsplug_bytes_out_total` | route | messages and payload bytes to clients, topic messages included |
//! | `wsplug_closes_total` | route, code | connections ended, by the close code sent (the client's, echoed, if it closed first; `none` if the connection dropped) |
//! | `wsplug_handler_failures_total` | route, cause | handlers that failed: `trap`, `cpu-budget`, `memory` |
//! | `wsplug_instantiation_seconds` | route | histogram: creating a connection's instance |
//! | `wsplug_topic_deliveries_total`, `wsplug_topic_drops_total` | route | topic messages queued for / dropped at a slow subscriber of the route |

use crate::wasm::runtime::CpuBudgetExceeded;
use crate::wasm::shared::SharedInstanceFailed;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Refusal {
    route: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Close {
    route: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Failure {
    route: String,
    cause: &'static str,
}

/// Why an upgrade was refused.
#[derive(Clone, Copy, Debug)]
pub enum Refused {
    /// Not a valid WebSocket upgrade.
    NotWebSocket,
    /// The host or the route is full.
    Capacity,
    /// The handler's handshake refused it.
    Handshake,
    /// The handler's instance could not be created.
    Instantiation,
    /// The page that opened it is of an origin the route does not allow.
    Origin,
    /// The client opens too many, or too fast.
    RateLimited,
}

/// Every figure of the host.
pub struct Metrics {
    registry: Registry,
    open: Family<Route, Gauge>,
    accepted: Family<Route, Counter>,
    refused: Family<Refusal, Counter>,
    messages_in: Family<Route, Counter>,
    bytes_in: Family<Route, Counter>,
    messages_out: Family<Route, Counter>,
    bytes_out: Family<Route, Counter>,
    closes: Family<Close, Counter>,
    failures: Family<Failure, Counter>,
    instantiation: Family<Route, Histogram>,
    topic_deliveries: Family<Route, Counter>,
    topic_drops: Family<Route, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let instantiation = Family::<Route, Histogram>::new_with_constructor(|| {
            // 10 µs to about 0.3 s.
            Histogram::new(exponential_buckets(0.000_01, 2.0, 16))
        });
        let mut metrics = Self {
            registry: Registry::default(),
            open: Family::default(),
            accepted: Family::default(),
            refused: Family::default(),
            messages_in: Family::default(),
            bytes_in: Family::default(),
            messages_out: Family::default(),
            bytes_out: Family::default(),
            closes: Family::default(),
            failures: Family::default(),
            instantiation,
            topic_deliveries: Family::default(),
            topic_drops: Family::default(),
        };
        let registry = &mut metrics.registry;
        registry.register("wsplug_connections_open", "WebSocket connections open now", metrics.open.clone());
        registry.register("wsplug_connections_accepted", "Upgrades accepted", metrics.accepted.clone());
        registry.register("wsplug_connections_refused", "Upgrades refused, by reason", metrics.refused.clone());
        registry.register("wsplug_messages_in", "Messages from clients", metrics.messages_in.clone());
        registry.register("wsplug_bytes_in", "Payload bytes from clients", metrics.bytes_in.clone());
        registry.register("wsplug_messages_out", "Messages to clients", metrics.messages_out.clone());
        registry.register("wsplug_bytes_out", "Payload bytes to clients", metrics.bytes_out.clone());
        registry.register("wsplug_closes", "Connections ended, by close code", metrics.closes.clone());
        registry.register("wsplug_handler_failures", "Handlers that failed, by cause", metrics.failures.clone());
        registry.register(
            "wsplug_instantiation_seconds",
            "Time to create a connection's instance",
            metrics.instantiation.clone(),
        );
        registry.register(
            "wsplug_topic_deliveries",
            "Topic messages queued for a subscriber",
            metrics.topic_deliveries.clone(),
        );
        registry.register(
            "wsplug_topic_drops",
            "Topic messages dropped at a subscriber that could not keep up",
            metrics.topic_drops.clone(),
        );
        metrics
    }
}

impl Metrics {
    /// The figures in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }

    /// The counters of one route, for its connections to count without a
    /// look-up per message.
    pub fn route(&self, route: &str) -> RouteMetrics {
        let label = Route { route: route.to_owned() };
        RouteMetrics {
            messages_in: self.messages_in.get_or_create(&label).clone(),
            bytes_in: self.bytes_in.get_or_create(&label).clone(),
            messages_out: self.messages_out.get_or_create(&label).clone(),
            bytes_out: self.bytes_out.get_or_create(&label).clone(),
            open: self.open.get_or_create(&label).clone(),
            topic_deliveries: self.topic_deliveries.get_or_create(&label).clone(),
            topic_drops: self.topic_drops.get_or_create(&label).clone(),
        }
    }

    /// An upgrade to `route` was accepted; its instance took `instantiation`.
    pub fn accepted(&self, route: &str, instantiation: Duration) {
        let label = Route { route: route.to_owned() };
        self.accepted.get_or_create(&label).inc();
        self.instantiation.get_or_create(&label).observe(instantiation.as_secs_f64());
    }

    /// An upgrade to `route` was refused.
    pub fn refused(&self, route: &str, why: Refused) {
        let reason = match why {
            Refused::NotWebSocket => "not-websocket",
            Refused::Capacity => "capacity",
            Refused::Handshake => "handshake",
            Refused::Instantiation => "instantiation",
            Refused::Origin => "origin",
            Refused::RateLimited => "rate-limit",
        };
        self.refused.get_or_create(&Refusal { route: route.to_owned(), reason }).inc();
    }

    /// A connection to `route` ended with close `code` (`None`: no close
    /// frame).
    pub fn closed(&self, route: &str, code: Option<u16>) {
        // The codes applications and libraries choose are one label each
        // range: a client must not make a series per code it sends.
        let code = match code {
            None => "none".to_owned(),
            Some(3000..=3999) => "3xxx".to_owned(),
            Some(4000..=4999) => "4xxx".to_owned(),
            Some(code) => code.to_string(),
        };
        self.closes.get_or_create(&Close { route: route.to_owned(), code }).inc();
    }

    /// The handler of a connection to `route` failed with `error`.
    pub fn failed(&self, route: &str, error: &wasmtime::Error) {
        let cause = failure_cause(error);
        self.failures.get_or_create(&Failure { route: route.to_owned(), cause }).inc();
    }
}

/// What made a handler fail: its CPU budget, its memory limit, or anything
/// else it did (a trap). A connection on a shared instance that failed
/// counts what made the instance fail.
pub fn failure_cause(error: &wasmtime::Error) -> &'static str {
    if let Some(shared) = error.chain().find_map(|cause| cause.downcast_ref::<SharedInstanceFailed>()) {
        shared.cause
    } else if error.chain().any(|cause| cause.is::<CpuBudgetExceeded>()) {
        "cpu-budget"
    } else if error.chain().any(|cause| cause.to_string().contains("when growing memory")) {
        // wasmtime's words when `StoreLimits` refuses to grow a memory.
        "memory"
    } else {
        "trap"
    }
}

/// One route's counters, shared by its connections.
#[derive(Clone, Debug, Default)]
pub struct RouteMetrics {
    /// Messages from clients.
    pub messages_in: Counter,
    /// Payload bytes from clients.
    pub bytes_in: Counter,
    /// Messages to clients.
    pub messages_out: Counter,
    /// Payload bytes to clients.
    pub bytes_out: Counter,
    /// Connections open now.
    pub open: Gauge,
    /// Topic messages queued for the route's connections.
    pub topic_deliveries: Counter,
    /// Topic messages dropped at the route's connections.
    pub topic_drops: Counter,
}
