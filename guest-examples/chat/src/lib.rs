//! A chat room per topic: `ws://HOST/chat?room=R&name=N`.
//!
//! When N connects, everyone in room R (N included) receives `* N joined`;
//! each text message `m` from N reaches everyone in R as `N: m`; when N's
//! connection ends, the others receive `* N left`. Room R is the topic
//! `room:R`, so the admin API's `POST /topics/room:R` reaches the whole room.
//!
//! The handler is never woken for the room's messages: it joins the topic,
//! and the host writes what is published there straight to the client.

use wsplug_sdk::{ConnectionInfo, Decision, Flow, Handshake, HandshakeRequest, Incoming, Outgoing, topics};

/// The longest name, in characters.
const MAX_NAME: usize = 32;
/// The longest room name, in characters.
const MAX_ROOM: usize = 64;

struct Chat;

/// Who is talking where, from the query string.
struct Seat {
    room: String,
    name: String,
}

impl Seat {
    /// Reads `room` and `name` from the query; the error is the reason the
    /// handshake gives the client.
    fn from_query(query: Option<&str>) -> Result<Self, String> {
        let mut room = None;
        let mut name = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*key {
                "room" => room = Some(value.into_owned()),
                "name" => name = Some(value.into_owned()),
                _ => {}
            }
        }
        let room = room.ok_or("the query needs room=R")?;
        let name = name.ok_or("the query needs name=N")?;
        let room_chars = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if room.is_empty() || room.len() > MAX_ROOM || !room.chars().all(room_chars) {
            return Err(format!("room must be 1 to {MAX_ROOM} letters, digits, - or _"));
        }
        let name = name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(format!("name must be 1 to {MAX_NAME} characters, none of them control characters"));
        }
        Ok(Self { room, name })
    }

    fn topic(&self) -> String {
        format!("room:{}", self.room)
    }
}

impl Handshake for Chat {
    fn decide(request: HandshakeRequest) -> Decision {
        match Seat::from_query(request.query.as_deref()) {
            Ok(_) => Decision::default_for(&request),
            Err(reason) => Decision::reject(400, reason),
        }
    }
}

impl Flow for Chat {
    async fn run(info: ConnectionInfo, mut incoming: Incoming, _outgoing: Outgoing) -> wsplug_sdk::Result {
        // The handshake has checked the query.
        let Ok(seat) = Seat::from_query(info.query.as_deref()) else { return Ok(()) };
        let topic = seat.topic();
        let name = &seat.name;
        // A room the host refuses (too many topics) ends the connection.
        if let Err(error) = topics::join(&topic) {
            eprintln!("cannot join {topic}: {error}");
            return Ok(());
        }
        let _ = topics::publish(&topic, format!("* {name} joined"));
        while let Some(message) = incoming.next().await {
            // Binary messages are not part of the chat.
            if let Some(text) = message.into_text().await {
                let _ = topics::publish(&topic, format!("{name}: {text}"));
            }
        }
        let _ = topics::publish_to_others(&topic, format!("* {name} left"));
        Ok(())
    }
}

wsplug_sdk::export_flow!(Chat with handshake);
