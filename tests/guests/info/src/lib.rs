//! Reports what the host told it about the connection, as its first message:
//! `subprotocol=<..> query=<..> x-test=<..>`, then echoes text messages
//! (`spam` first prints 1000 lines to stdout);
//! once its input has ended, prints the client's close frame to stdout and
//! sends it, if the connection is still open (`input ended without a close
//! frame` when there is none).

use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing};

struct Info;

impl Flow for Info {
    async fn run(info: ConnectionInfo, mut incoming: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        let header = info.headers.iter().find(|(name, _)| name == "x-test").map(|(_, value)| value.as_str());
        let report = format!(
            "subprotocol={} query={} x-test={}",
            info.subprotocol.as_deref().unwrap_or("-"),
            info.query.as_deref().unwrap_or("-"),
            header.unwrap_or("-")
        );
        outgoing.send_text(report).await?;
        while let Some(message) = incoming.next().await {
            let Some(text) = message.into_text().await else { continue };
            if text == "spam" {
                for line in 0..1000 {
                    println!("spam line {line}");
                }
            }
            // Fails once the connection is gone; the close frame is still to print.
            if outgoing.send_text(text).await.is_err() {
                break;
            }
        }
        let ended = match incoming.close_frame().await {
            Some(frame) => format!("client closed with {} {:?}", frame.code, frame.reason),
            None => "input ended without a close frame".to_owned(),
        };
        // Goes to the host's log, tagged with the connection.
        println!("{ended}");
        // Reaches the client if it is still there (the server is shutting
        // down); fails quietly if not.
        let _ = outgoing.send_text(ended).await;
        Ok(())
    }
}

wsplug_sdk::export_flow!(Info);
