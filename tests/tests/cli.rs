//! The README's flow with the real binary: `wsplug serve` with two routes,
//! then `wsplug talk` to the greeter.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use wsplug_tests::{example, wsplug_binary};

/// Kills the server when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_two_routes_and_talk_to_the_greeter() {
    let greeter = format!("/greeter={}", example("greeter").display());
    let ticker = format!("/ticker={}", example("ticker").display());
    let mut server = Running(
        Command::new(wsplug_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--route", &greeter, "--route", &ticker])
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start wsplug serve"),
    );

    // The server logs one `serving ws://...` line per route once it listens.
    let mut log = BufReader::new(server.0.stderr.take().unwrap());
    let mut urls = Vec::new();
    while urls.len() < 2 {
        let mut line = String::new();
        assert!(log.read_line(&mut line).unwrap() > 0, "wsplug serve exited; log so far: {urls:?}");
        if let Some(url) = line.split_whitespace().find(|word| word.starts_with("ws://")) {
            urls.push(url.to_owned());
        }
    }
    let greeter_url = urls.iter().find(|url| url.ends_with("/greeter")).expect("a greeter route");
    assert!(urls.iter().any(|url| url.ends_with("/ticker")), "{urls:?}");

    let mut talk = Command::new(wsplug_binary())
        .args(["talk", greeter_url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start wsplug talk");
    talk.stdin.take().unwrap().write_all(b"Peter\nJohn\n").unwrap();
    let output = talk.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("< Hello Peter!\n") && stdout.contains("< Hello John!\n"), "{stdout}");
}
