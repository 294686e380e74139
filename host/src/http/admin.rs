//! The admin API: how a backend in any language publishes to topics, and
//! where operators read the host's figures. It listens on an address of its
//! own (`admin-listen`), never on the public port, and may require a bearer
//! token (`admin-token`) for everything but `/healthz`.
//!
//! | request | answer |
//! |---|---|
//! | `GET /healthz` | `200` `ok` (no token needed) |
//! | `GET /metrics` | `200`, the figures in Prometheus (OpenMetrics) text format (see [`crate::metrics`]) |
//! | `POST /topics/{topic}`, body = the message | `202` `{"reached":N}`: queued for N subscribers on this host (the name may be percent-encoded: `room%3Alobby`) |
//! | the same with a `text/*` content type | the message is text (`400` if the body is not UTF-8) |
//! | a bad topic name | `400` |
//! | a body over `[topics] max-message-size` | `413` |
//! | wrong or missing token (when one is set) | `401` |
//! | another method on one of these paths | `405`, with `Allow` |
//! | any other path | `404` |
//! | the broker cannot take messages | `503` |

use super::upgrade::{UNKNOWN_RESOURCE, text_response};
use super::{Body, full};
use crate::http::server::App;
use crate::topics::{Published, TopicError};
use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use percent_encoding::percent_decode_str;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use tokio::net::TcpListener;

/// `405`, with the methods the resource takes.
fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = text_response(StatusCode::METHOD_NOT_ALLOWED, format!("Use {allow}.\n"));
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// The bound admin listener.
pub struct Admin {
    listener: TcpListener,
    api: Arc<AdminApi>,
}

/// What the admin API serves.
struct AdminApi {
    app: App,
    token: Option<String>,
}

impl Admin {
    /// Binds `address` for the admin API of `app`; with a `token`, every
    /// request must carry `Authorization: Bearer <token>`.
    pub async fn bind(address: SocketAddr, app: App, token: Option<String>) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address} (admin-listen)"))?;
        Ok(Self { listener, api: Arc::new(AdminApi { app, token }) })
    }

    /// The address the admin API listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves requests until `stop` resolves.
    pub async fn run_until(self, stop: impl Future<Output = ()>) {
        let mut stop = pin!(stop);
        loop {
            let (tcp, _) = tokio::select! {
                accepted = super::accept(&self.listener) => accepted,
                () = &mut stop => break,
            };
            let api = self.api.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let api = api.clone();
                    async move { Ok::<_, Infallible>(api.answer(request).await) }
                });
                if let Err(err) =
                    auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tcp), service).await
                {
                    tracing::debug!("admin connection failed: {err}");
                }
            });
        }
    }
}

impl AdminApi {
    async fn answer(&self, request: Request<Incoming>) -> Response<Body> {
        let get = request.method() == Method::GET || request.method() == Method::HEAD;
        let path = request.uri().path();
        // `/healthz` answers whoever asks, for load balancers.
        if path == "/healthz" {
            return if get { text_response(StatusCode::OK, "ok\n") } else { not_allowed("GET, HEAD") };
        }
        if !self.authorized(&request) {
            let mut response = text_response(StatusCode::UNAUTHORIZED, "A valid bearer token is required.\n");
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        if path == "/metrics" {
            if !get {
                return not_allowed("GET, HEAD");
            }
            let mut response = Response::new(full(self.app.metrics().encode()));
            let format = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format));
            return response;
        }
        let Some(topic) = path.strip_prefix("/topics/") else {
            return text_response(StatusCode::NOT_FOUND, format!("{UNKNOWN_RESOURCE}\n"));
        };
        if request.method() != Method::POST {
            return not_allowed("POST");
        }
        // `room%3Alobby` is `room:lobby`: what a backend's URL encoding makes of it.
        let Ok(topic) = percent_decode_str(topic).decode_utf8().map(String::from) else {
            return text_response(StatusCode::BAD_REQUEST, "The topic name is not UTF-8 once decoded.\n");
        };
        let broker = self.app.broker();
        if let Err(error) = crate::topics::check_name(&topic) {
            return text_response(StatusCode::BAD_REQUEST, format!("{error}\n"));
        }
        let text = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim_start().to_ascii_lowercase().starts_with("text/"));
        let limit = broker.max_message_size();
        let too_large =
            || text_response(StatusCode::PAYLOAD_TOO_LARGE, format!("The message is over {limit} bytes.\n"));
        let declared =
            request.headers().get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse().ok());
        if declared.is_some_and(|length: u64| length > limit as u64) {
            return too_large();
        }
        let payload = match Limited::new(request.into_body(), limit).collect().await {
            Ok(body) => body.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => return too_large(),
            Err(error) => {
                tracing::debug!("admin request body failed: {error}");
                return text_response(StatusCode::BAD_REQUEST, "The request body could not be read.\n");
            }
        };
        let message = if text {
            if std::str::from_utf8(&payload).is_err() {
                return text_response(StatusCode::BAD_REQUEST, "A text/* body must be UTF-8.\n");
            }
            Published { text: true, payload }
        } else {
            Published::binary(payload)
        };
        match broker.publish(&topic, message, None) {
            Ok(reached) => {
                let mut response = Response::new(full(Bytes::from(format!("{{\"reached\":{reached}}}\n"))));
                *response.status_mut() = StatusCode::ACCEPTED;
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
            Err(error @ TopicError::Unavailable(_)) => {
                text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n"))
            }
            Err(error @ TopicError::TooLarge(_)) => text_response(StatusCode::PAYLOAD_TOO_LARGE, format!("{error}\n")),
            Err(error) => text_response(StatusCode::BAD_REQUEST, format!("{error}\n")),
        }
    }

    /// Whether the request carries the token, if one is required. Compared
    /// in constant time, so that timing does not reveal how much matched.
    fn authorized<B>(&self, request: &Request<B>) -> bool {
        let Some(token) = &self.token else { return true };
        let Some(given) = request.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes) else {
            return false;
        };
        // The scheme's name is case-insensitive (RFC 9110, 11.1), and one or
        // more spaces follow it (11.4).
        let Some((scheme, given)) = given.split_at_checked(b"Bearer ".len()) else { return false };
        let given = given.trim_ascii_start();
        scheme.eq_ignore_ascii_case(b"Bearer ")
            && given.len() == token.len()
            && given.iter().zip(token.as_bytes()).fold(0, |differ, (a, b)| differ | (a ^ b)) == 0
    }
}
