//! A handler that decides its own handshake: it wants a bearer token,
//! prefers `chat.v2` over `chat.v1`, and greets with a response header. With
//! the query `misbehave` it picks a subprotocol the client did not offer,
//! which the host must refuse. Once connected it says which protocol it got,
//! then echoes.

use wsplug_sdk::{Acceptance, ConnectionInfo, Decision, Flow, Handshake, HandshakeRequest, Incoming, Outgoing};

struct Chat;

impl Handshake for Chat {
    fn decide(request: HandshakeRequest) -> Decision {
        if request.header("authorization") != Some("Bearer letmein") {
            return Decision::reject(401, "a bearer token is required");
        }
        if request.query.as_deref() == Some("misbehave") {
            return Decision::accept(Some("not-offered"));
        }
        let preferred = ["chat.v2", "chat.v1"];
        let subprotocol = preferred.into_iter().find(|p| request.offered_protocols.iter().any(|offered| offered == p));
        Decision::Accept(Acceptance {
            subprotocol: subprotocol.map(str::to_owned),
            headers: vec![("x-chat".to_owned(), "welcome".to_owned())],
        })
    }
}

impl Flow for Chat {
    async fn run(info: ConnectionInfo, mut incoming: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        outgoing.send_text(format!("protocol {}", info.subprotocol.as_deref().unwrap_or("none"))).await?;
        while let Some(message) = incoming.next().await {
            outgoing.send(message).await?;
        }
        Ok(())
    }
}

wsplug_sdk::export_flow!(Chat with handshake);
