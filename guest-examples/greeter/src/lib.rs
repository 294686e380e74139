//! The greeter: answers each text message `Peter` with `Hello Peter!`,
//! streaming the name back as it arrives. Binary messages are ignored.

use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing};

struct Greeter;

impl Flow for Greeter {
    async fn run(_: ConnectionInfo, mut incoming: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        while let Some(message) = incoming.next().await {
            // A binary message is dropped unread: the host discards it.
            let Some(mut name) = message.into_text_chunks() else { continue };
            let mut reply = outgoing.text_stream().await?;
            reply.write("Hello ").await?;
            while let Some(chunk) = name.next().await {
                reply.write(chunk).await?;
            }
            reply.write("!").await?;
        }
        Ok(())
    }
}

wsplug_sdk::export_flow!(Greeter);
