//! `wsplug serve` in a process of its own, for tests that need the real
//! binary: its log, its exit, its memory apart from the test's; and
//! `wsplug talk`.

use crate::{HANG_GUARD, wsplug_binary};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// Kills the server when the test ends, however it ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `wsplug serve` on a free port; returns it, the `ws://` URL of each
/// route (read from its log) and the rest of its log, line by line.
pub fn serve(routes: &[(&str, PathBuf)]) -> (Running, Vec<String>, mpsc::Receiver<String>) {
    let mut args = Vec::new();
    for (path, component) in routes {
        args.extend(["--route".to_owned(), format!("{path}={}", component.display())]);
    }
    serve_with(&args, routes.len())
}

/// Waits for the first log line that contains every one of `parts`.
/// (Blocking: the server runs in a process of its own.)
pub fn log_line(log: &mpsc::Receiver<String>, parts: &[&str]) -> String {
    loop {
        let line = log.recv_timeout(HANG_GUARD).unwrap_or_else(|_| panic!("no line with {parts:?} in the log"));
        if parts.iter().all(|part| line.contains(part)) {
            return line;
        }
    }
}

/// Starts `wsplug serve --config` with a config file whose text is `config`
/// (the file is gone once the server has read it). The URLs are its routes'
/// and, if it has `admin-listen`, the admin API's (`http://...`) last.
pub fn serve_config(config: &str) -> (Running, Vec<String>, mpsc::Receiver<String>) {
    static FILES: AtomicUsize = AtomicUsize::new(0);
    let file = std::env::temp_dir().join(format!(
        "wsplug-test-{}-{}.toml",
        std::process::id(),
        FILES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&file, config).expect("a temporary config file");
    let urls = config.matches("[[route]]").count() + usize::from(config.contains("admin-listen"));
    let served = serve_with(&["--config".to_owned(), file.display().to_string()], urls);
    std::fs::remove_file(file).expect("the temporary config file");
    served
}

/// Starts `wsplug serve` with `args` on a free port, and waits for the log
/// lines that name `urls` URLs (routes, then the admin API).
pub fn serve_with(args: &[String], urls_expected: usize) -> (Running, Vec<String>, mpsc::Receiver<String>) {
    let mut command = Command::new(wsplug_binary());
    command.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
    let mut server = Running(command.stderr(Stdio::piped()).spawn().expect("cannot start wsplug serve"));
    // The server logs one `serving ws://...` line per route, then the admin
    // API's address, once it listens.
    let mut log = BufReader::new(server.0.stderr.take().unwrap());
    let mut urls = Vec::new();
    // Lines before the last URL that are not URLs still belong to the log.
    let mut early = Vec::new();
    while urls.len() < urls_expected {
        let mut line = String::new();
        assert!(log.read_line(&mut line).unwrap() > 0, "wsplug serve exited; log so far: {urls:?} {early:?}");
        let logs_url = line.contains("serving ws") || line.contains("admin API on http://");
        let is_url = |word: &&str| ["ws://", "wss://", "http://"].iter().any(|scheme| word.starts_with(scheme));
        match line.split_whitespace().find(is_url) {
            Some(url) if logs_url => urls.push(url.to_owned()),
            _ => early.push(line.trim_end().to_owned()),
        }
    }
    // Keep reading the log so that the server never blocks on it.
    let (lines_tx, lines) = mpsc::channel();
    for line in early {
        lines_tx.send(line).expect("the receiver is here");
    }
    std::thread::spawn(move || {
        for line in log.lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    (server, urls, lines)
}

/// Runs `wsplug talk ARGS` with `input` on its standard input; its exit
/// status, stdout and stderr.
pub fn talk(args: &[&str], input: &[u8]) -> (bool, String, String) {
    let mut talk = Command::new(wsplug_binary())
        .arg("talk")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start wsplug talk");
    talk.stdin.take().expect("piped").write_all(input).expect("talk reads its input");
    let output = talk.wait_with_output().expect("talk runs");
    let text = |bytes| String::from_utf8(bytes).expect("talk prints UTF-8");
    (output.status.success(), text(output.stdout), text(output.stderr))
}
