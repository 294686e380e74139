//! The WebSocket opening handshake, checked the way a careful server does:
//! RFC 6455 section 4.2 over HTTP/1.1, RFC 8441 (extended CONNECT) over
//! HTTP/2; subprotocol choice; the HTTP answers to requests that fail it.

use super::{Body, full};
use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Why a request to a WebSocket route is not accepted as an upgrade.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not an upgrade to WebSocket at all (a plain HTTP request): `400`.
    NotWebSocket,
    /// An upgrade, but not with `GET`: `405`.
    MethodNotAllowed,
    /// An upgrade over HTTP/1.0: `400`.
    HttpVersion,
    /// `Sec-WebSocket-Version` is not 13: `426` naming the one we speak.
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` is missing or malformed: `400`.
    BadKey,
    /// An upgrade request with a body (`Content-Length` above 0, or
    /// `Transfer-Encoding`): `400`.
    BodyOnUpgrade,
    /// The host or the route is at its connection limit: `503` with
    /// `Retry-After`.
    TooManyConnections,
}

impl Rejection {
    /// The HTTP answer for this rejection.
    pub fn into_response(self) -> Response<Body> {
        let (status, body) = match self {
            Rejection::NotWebSocket => (StatusCode::BAD_REQUEST, "Not a valid websocket request!"),
            Rejection::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "A websocket upgrade must use GET."),
            Rejection::HttpVersion => (StatusCode::BAD_REQUEST, "A websocket upgrade needs HTTP/1.1 or later."),
            Rejection::UnsupportedVersion => {
                (StatusCode::UPGRADE_REQUIRED, "Unsupported Sec-WebSocket-Version; wsplug speaks 13.")
            }
            Rejection::BadKey => (StatusCode::BAD_REQUEST, "Missing or malformed Sec-WebSocket-Key."),
            Rejection::BodyOnUpgrade => (StatusCode::BAD_REQUEST, "A websocket upgrade has no body."),
            Rejection::TooManyConnections => {
                (StatusCode::SERVICE_UNAVAILABLE, "Too many connections; try again later.")
            }
        };
        let mut response = text_response(status, body);
        if self == Rejection::UnsupportedVersion {
            response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        if self == Rejection::MethodNotAllowed {
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
        }
        if self == Rejection::TooManyConnections {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        response
    }
}

/// What a client at the connection limit is told to wait, in seconds.
const RETRY_AFTER_SECONDS: &str = "1";

/// The body of a `404`, for a path that nothing here serves.
pub const UNKNOWN_RESOURCE: &str = "Unknown resource!";

/// A plain-text response.
pub fn text_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Checks an upgrade request; on success returns the response to send,
/// before any subprotocol is chosen.
pub fn accept<B>(request: &Request<B>) -> Result<Response<Body>, Rejection> {
    let headers = request.headers();
    let mut response = Response::new(full(Bytes::new()));
    if request.version() == Version::HTTP_2 {
        // RFC 8441: an extended CONNECT with `:protocol websocket`, answered
        // with 200; no key, no accept value.
        let protocol = request.extensions().get::<hyper::ext::Protocol>();
        if request.method() != Method::CONNECT
            || !protocol.is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
        {
            return Err(Rejection::NotWebSocket);
        }
        check_version(headers)?;
    } else {
        if !has_token(headers, &header::CONNECTION, "upgrade") || !has_token(headers, &header::UPGRADE, "websocket") {
            return Err(Rejection::NotWebSocket);
        }
        if request.method() != Method::GET {
            return Err(Rejection::MethodNotAllowed);
        }
        if request.version() < Version::HTTP_11 {
            return Err(Rejection::HttpVersion);
        }
        check_version(headers)?;
        let has_body = headers.contains_key(header::TRANSFER_ENCODING)
            || headers.get(header::CONTENT_LENGTH).is_some_and(|length| length.as_bytes() != b"0");
        if has_body {
            return Err(Rejection::BodyOnUpgrade);
        }
        let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or(Rejection::BadKey)?;
        if !is_valid_key(key.as_bytes()) {
            return Err(Rejection::BadKey);
        }
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let response_headers = response.headers_mut();
        response_headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        response_headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let accept_key = derive_accept_key(key.as_bytes());
        response_headers.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&accept_key).expect("base64 is a valid header value"),
        );
    }
    Ok(response)
}

fn check_version(headers: &HeaderMap) -> Result<(), Rejection> {
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) == Some(b"13") {
        Ok(())
    } else {
        Err(Rejection::UnsupportedVersion)
    }
}

/// Headers as `(name, value)` pairs, names in lower case, in order; values
/// that are not text are left out.
pub fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect()
}

/// The subprotocols the client offered, in its order.
pub fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|protocol| !protocol.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The default choice: the first of the route's `protocols` that the client
/// offered, if any.
pub fn first_offered(protocols: &[String], offered: &[String]) -> Option<String> {
    protocols.iter().find(|protocol| offered.contains(protocol)).cloned()
}

/// Whether a comma-separated header (any of its occurrences) lists `token`,
/// compared case-insensitively.
fn has_token(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// A key is the base64 encoding of 16 bytes: 22 base64 digits and `==`.
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22].iter().all(|&byte| byte.is_ascii_alphanumeric() || byte == b'+' || byte == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade_request(version: &str, key: &str) -> hyper::http::request::Builder {
        Request::get("/chat")
            .header("Connection", "keep-alive, Upgrade")
            .header("Upgrade", "WebSocket")
            .header("Sec-WebSocket-Version", version)
            .header("Sec-WebSocket-Key", key)
    }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    #[test]
    fn accepts_a_valid_upgrade_with_the_rfc_accept_key() {
        let response = accept(&upgrade_request("13", KEY).body(()).unwrap()).unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        // The example from RFC 6455 section 1.3.
        assert_eq!(response.headers()[header::SEC_WEBSOCKET_ACCEPT], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn rejects_what_is_not_a_valid_upgrade() {
        let plain = Request::get("/chat").body(()).unwrap();
        assert_eq!(accept(&plain).unwrap_err(), Rejection::NotWebSocket);
        let post = upgrade_request("13", KEY).method(Method::POST).body(()).unwrap();
        assert_eq!(accept(&post).unwrap_err(), Rejection::MethodNotAllowed);
        let old = upgrade_request("13", KEY).version(Version::HTTP_10).body(()).unwrap();
        assert_eq!(accept(&old).unwrap_err(), Rejection::HttpVersion);
        let v8 = upgrade_request("8", KEY).body(()).unwrap();
        assert_eq!(accept(&v8).unwrap_err(), Rejection::UnsupportedVersion);
        let short_key = upgrade_request("13", "c2hvcnQ=").body(()).unwrap();
        assert_eq!(accept(&short_key).unwrap_err(), Rejection::BadKey);
    }

    #[test]
    fn the_default_subprotocol_is_the_routes_first_choice_among_those_offered() {
        let ours = ["chat.v2".to_owned(), "chat.v1".to_owned()];
        let request = upgrade_request("13", KEY).header("Sec-WebSocket-Protocol", "chat.v1, chat.v2").body(()).unwrap();
        let offered = offered_protocols(request.headers());
        assert_eq!(offered, ["chat.v1", "chat.v2"]);
        assert_eq!(first_offered(&ours, &offered).as_deref(), Some("chat.v2"));
        assert_eq!(first_offered(&ours, &["mqtt".to_owned()]), None);
    }
}
