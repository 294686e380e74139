//! Reports what it may touch, as its first message:
//! `env=<$GREETING> file=<contents of /data/hello.txt> write=<..> outside=<..>`
//! where anything refused reads `denied`.

use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing};

struct Caps;

fn or_denied<T>(result: std::io::Result<T>, show: impl FnOnce(T) -> String) -> String {
    result.map(show).unwrap_or_else(|_| "denied".to_owned())
}

impl Flow for Caps {
    async fn run(_: ConnectionInfo, _: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        let env = std::env::var("GREETING").unwrap_or_else(|_| "-".to_owned());
        let file = or_denied(std::fs::read_to_string("/data/hello.txt"), |text| text.trim().to_owned());
        let write = or_denied(std::fs::write("/data/written.txt", "x"), |()| "allowed".to_owned());
        let outside = or_denied(std::fs::read_to_string("/etc/hostname"), |_| "allowed".to_owned());
        outgoing.send_text(format!("env={env} file={file} write={write} outside={outside}")).await
    }
}

wsplug_sdk::export_flow!(Caps);
