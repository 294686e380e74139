//! The handler's say in the opening handshake.

use crate::bindings::{Acceptance, Decision, HandshakeRequest, Rejection};

impl Decision {
    /// What the host decides for a component without a handshake: accept,
    /// with the route's first configured subprotocol that the client offered.
    pub fn default_for(request: &HandshakeRequest) -> Self {
        let subprotocol =
            request.route_protocols.iter().find(|protocol| request.offered_protocols.contains(protocol)).cloned();
        Decision::Accept(Acceptance { subprotocol, headers: Vec::new() })
    }

    /// Accept, with `subprotocol` (which must be one the client offered).
    pub fn accept(subprotocol: Option<&str>) -> Self {
        Decision::Accept(Acceptance { subprotocol: subprotocol.map(str::to_owned), headers: Vec::new() })
    }

    /// Refuse with an HTTP `status` (4xx or 5xx) and a text `body`.
    pub fn reject(status: u16, body: impl Into<String>) -> Self {
        Decision::Reject(Rejection { status, headers: Vec::new(), body: body.into() })
    }
}

impl HandshakeRequest {
    /// The first value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}
