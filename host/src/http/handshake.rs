//! The handler's say in the opening handshake: its `handshake.decide` export
//! if it has one, else the default decision (accept, with the route's first
//! subprotocol that the client offered). What a handler decides is checked:
//! a subprotocol the client did not offer, a bad header or a status that is
//! not an error is the handler's fault, answered with 500 and logged.

use super::upgrade::{self, text_response};
use super::{Body, full};
use crate::wasm::bindings::{Decision, HandshakeRequest};
use crate::wasm::runtime::Guest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};

/// What becomes of a connection attempt.
pub enum Verdict {
    /// Upgrade, with this subprotocol and these extra response headers.
    Accept {
        /// The chosen subprotocol, one the client offered.
        subprotocol: Option<String>,
        /// Extra headers for the upgrade response.
        headers: HeaderMap,
    },
    /// Answer with this response instead.
    Reject(Response<Body>),
}

/// Headers a handler may not set: they belong to the upgrade itself.
const RESERVED_HEADERS: [HeaderName; 8] = [
    header::CONNECTION,
    header::UPGRADE,
    header::SEC_WEBSOCKET_ACCEPT,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
    header::SEC_WEBSOCKET_VERSION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
];

/// Decides a valid upgrade request with the guest that will serve it.
pub async fn decide<B>(guest: &mut Guest, request: &Request<B>, route_protocols: &[String], id: u64) -> Verdict {
    let offered = upgrade::offered_protocols(request.headers());
    // Copied out of the request only for a handler that decides.
    let handshake_request = || HandshakeRequest {
        path: request.uri().path().to_owned(),
        query: request.uri().query().map(str::to_owned),
        headers: upgrade::header_pairs(request.headers()),
        offered_protocols: offered.clone(),
        route_protocols: route_protocols.to_vec(),
    };
    let decision = match guest.decide(handshake_request).await {
        Ok(Some(decision)) => decision,
        Ok(None) => {
            return Verdict::Accept {
                subprotocol: upgrade::first_offered(route_protocols, &offered),
                headers: HeaderMap::new(),
            };
        }
        Err(err) => return handler_fault(id, format!("its handshake failed: {err:?}")),
    };
    match decision {
        Decision::Accept(acceptance) => {
            if let Some(chosen) = &acceptance.subprotocol
                && !offered.contains(chosen)
            {
                return handler_fault(id, format!("it chose subprotocol `{chosen}`, which the client did not offer"));
            }
            match header_map(&acceptance.headers) {
                Ok(headers) => Verdict::Accept { subprotocol: acceptance.subprotocol, headers },
                Err(fault) => handler_fault(id, fault),
            }
        }
        Decision::Reject(rejection) => {
            let status = match StatusCode::from_u16(rejection.status) {
                Ok(status) if status.is_client_error() || status.is_server_error() => status,
                _ => {
                    return handler_fault(
                        id,
                        format!("it rejected with status {}, not a 4xx or 5xx", rejection.status),
                    );
                }
            };
            let headers = match header_map(&rejection.headers) {
                Ok(headers) => headers,
                Err(fault) => return handler_fault(id, fault),
            };
            let mut response = Response::new(full(rejection.body));
            *response.status_mut() = status;
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            response.headers_mut().extend(headers);
            Verdict::Reject(response)
        }
    }
}

/// Extra headers from the handler, checked.
fn header_map(pairs: &[(String, String)]) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        let name =
            HeaderName::try_from(name.as_str()).map_err(|_| format!("it set an invalid header name {name:?}"))?;
        if RESERVED_HEADERS.contains(&name) {
            return Err(format!("it set `{name}`, which belongs to the handshake"));
        }
        let value =
            HeaderValue::try_from(value.as_str()).map_err(|_| format!("it set an invalid value for `{name}`"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The handler got the handshake wrong: log why, answer 500.
fn handler_fault(id: u64, why: String) -> Verdict {
    tracing::warn!(connection = id, "refusing the upgrade because of the handler: {why}");
    Verdict::Reject(text_response(StatusCode::INTERNAL_SERVER_ERROR, "The handler failed the handshake."))
}
