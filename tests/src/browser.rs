//! A minimal headless-Chromium driver for the end-to-end tests, speaking the
//! Chrome DevTools Protocol (CDP) over one WebSocket.
//!
//! [`Browser::launch`] starts Chromium (`/usr/bin/chromium`, or `$CHROMIUM`)
//! with a throwaway profile and `--remote-debugging-port=0`, reads the port it
//! chose from `<profile>/DevToolsActivePort` and connects to its browser
//! endpoint. [`Browser::new_page`] opens a page in a browser context of its
//! own (separate cookies and storage, like an incognito window), so that two
//! pages are two independent users; [`Page::eval`] and [`Page::wait_for`]
//! run JavaScript in it.
//!
//! Pages are reached through "flattened" sessions: every command for a page
//! goes over the browser connection with that page's `sessionId`. Commands
//! go one at a time: the caller holding the connection sends its request and
//! reads until the response with its id, skipping the events (and any
//! response left over by a command whose caller gave up waiting).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! let browser = wsplug_tests::browser::Browser::launch().await?;
//! let page = browser.new_page("http://127.0.0.1:8080/?room=lobby&name=Ann").await?;
//! page.wait_for("document.getElementById('status').textContent === 'connected'", Duration::from_secs(5)).await?;
//! # Ok(())
//! # }
//! ```

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::HANG_GUARD;

/// Where Chromium is unless the `CHROMIUM` environment variable says otherwise.
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// How often [`Browser::launch`] looks for `DevToolsActivePort` and
/// [`Page::wait_for`] re-evaluates its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A headless Chromium and the DevTools connection to it. Dropping it kills
/// Chromium and deletes its profile directory; the [`Page`]s opened from it
/// then fail on use.
pub struct Browser {
    cdp: Arc<Cdp>,
    // Kills Chromium when dropped, after `cdp`.
    _chromium: Chromium,
}

impl Browser {
    /// Starts Chromium and connects to it, failing with a hint on how to
    /// install it if the binary is missing.
    pub async fn launch() -> anyhow::Result<Self> {
        let binary = std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMIUM));
        if !binary.exists() {
            bail!(
                "Chromium not found at {}: install it with `apt-get install chromium` (make test does)",
                binary.display()
            );
        }
        let mut chromium = Chromium::start(&binary)?;
        let endpoint = chromium.devtools_endpoint().await?;
        let (socket, _) = crate::guard(tokio_tungstenite::connect_async(endpoint.as_str()))
            .await?
            .with_context(|| format!("connecting to Chromium's DevTools at {endpoint}"))?;
        let cdp = Cdp { socket: Mutex::new(socket), next_id: AtomicU64::new(1) };
        Ok(Self { cdp: Arc::new(cdp), _chromium: chromium })
    }

    /// Opens `url` in a new tab of a new browser context, returning once the
    /// navigation has committed and the document has loaded
    /// (`document.readyState` is `complete`). Fails if the page cannot be
    /// loaded at all (e.g. connection refused); an HTTP error status still
    /// yields a page.
    pub async fn new_page(&self, url: &str) -> anyhow::Result<Page> {
        let context = self.cdp.call(None, "Target.createBrowserContext", json!({})).await?;
        let context_id = string_field(&context, "browserContextId")?;
        // The tab starts blank and is then navigated, so that the page's
        // first `eval` cannot run in the initial about:blank document.
        let target = self
            .cdp
            .call(None, "Target.createTarget", json!({ "url": "about:blank", "browserContextId": context_id }))
            .await?;
        let target_id = string_field(&target, "targetId")?;
        let attached =
            self.cdp.call(None, "Target.attachToTarget", json!({ "targetId": target_id, "flatten": true })).await?;
        let page = Page { cdp: self.cdp.clone(), session_id: string_field(&attached, "sessionId")?, context_id };
        // Answered once the navigation has committed or failed.
        let navigated = page.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(error) = navigated.get("errorText").and_then(Value::as_str) {
            bail!("loading {url}: {error}");
        }
        page.wait_for("document.readyState === 'complete'", HANG_GUARD).await?;
        Ok(page)
    }
}

/// A tab in a browser context of its own, driven through a DevTools session.
pub struct Page {
    cdp: Arc<Cdp>,
    session_id: String,
    context_id: String,
}

impl Page {
    /// Evaluates the JavaScript expression `js` in the page and returns its
    /// value as JSON (a promise is awaited first; `undefined` and values JSON
    /// cannot represent come back as `null` or `{}`). An exception thrown by
    /// `js` is an error carrying its message.
    pub async fn eval(&self, js: &str) -> anyhow::Result<Value> {
        let mut evaluated = self
            .call("Runtime.evaluate", json!({ "expression": js, "returnByValue": true, "awaitPromise": true }))
            .await?;
        if let Some(details) = evaluated.get("exceptionDetails") {
            // `exception.description` has the message and stack;
            // `text` alone is often just "Uncaught".
            let message = details
                .pointer("/exception/description")
                .or_else(|| details.get("text"))
                .and_then(Value::as_str)
                .unwrap_or("(no description)");
            bail!("evaluating `{js}`: {message}");
        }
        Ok(evaluated.pointer_mut("/result/value").map(Value::take).unwrap_or(Value::Null))
    }

    /// Evaluates `js_condition` every 50 ms until it returns `true`, failing
    /// after `timeout` with the condition, its last result and the page's
    /// text. An exception in the condition counts as "not yet".
    pub async fn wait_for(&self, js_condition: &str, timeout: Duration) -> anyhow::Result<()> {
        let mut last = Err(anyhow!("no result yet"));
        let polled = tokio::time::timeout(timeout, async {
            loop {
                last = self.eval(js_condition).await;
                if matches!(last, Ok(Value::Bool(true))) {
                    return;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        })
        .await;
        if polled.is_ok() {
            return Ok(());
        }
        let last = match last {
            Ok(value) => value.to_string(),
            Err(error) => format!("{error:#}"),
        };
        let text = match self.eval("document.body ? document.body.innerText : '(no body)'").await {
            Ok(Value::String(text)) => text,
            Ok(other) => other.to_string(),
            Err(error) => format!("(unreadable: {error:#})"),
        };
        bail!("`{js_condition}` still not true after {timeout:?} (last result: {last}); the page's text:\n{text}")
    }

    /// Closes the page by disposing of its browser context: its WebSocket
    /// connections end as when a user closes the window.
    pub async fn close(self) -> anyhow::Result<()> {
        self.cdp.call(None, "Target.disposeBrowserContext", json!({ "browserContextId": self.context_id })).await?;
        Ok(())
    }

    /// Sends a command to this page's session.
    async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.cdp.call(Some(&self.session_id), method, params).await
    }
}

/// The WebSocket to Chromium's browser endpoint.
type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The DevTools connection, shared by the browser and its pages.
struct Cdp {
    socket: Mutex<Socket>,
    next_id: AtomicU64,
}

impl Cdp {
    /// Sends `method` (to the browser, or to the page of `session_id`) and
    /// returns the response's `result`, or its `error` as an error; fails if
    /// no response comes within [`HANG_GUARD`].
    async fn call(&self, session_id: Option<&str>, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut request = json!({ "id": id, "method": method, "params": params });
        if let Some(session_id) = session_id {
            request["sessionId"] = session_id.into();
        }
        let mut socket = self.socket.lock().await;
        let result = match tokio::time::timeout(HANG_GUARD, exchange(&mut socket, &request, id)).await {
            Ok(result) => result,
            Err(_) => Err(anyhow!("no response within {HANG_GUARD:?}")),
        };
        result.with_context(|| format!("DevTools command {method}"))
    }
}

/// Sends `request` and reads messages until the response with `id`.
async fn exchange(socket: &mut Socket, request: &Value, id: u64) -> anyhow::Result<Value> {
    socket.send(Message::text(request.to_string())).await?;
    loop {
        let message = match socket.next().await {
            Some(message) => message?,
            None => bail!("Chromium closed the DevTools connection"),
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => bail!("Chromium closed the DevTools connection: {frame:?}"),
            _ => continue,
        };
        let mut response: Value = serde_json::from_str(text.as_str())
            .with_context(|| format!("a DevTools message that is not JSON: {}", text.as_str()))?;
        // Events have no id; other ids answer calls whose callers gave up.
        if response.get("id").and_then(Value::as_u64) != Some(id) {
            continue;
        }
        if let Some(error) = response.get("error") {
            let message = error.get("message").and_then(Value::as_str).unwrap_or("(no message)");
            match error.get("data").and_then(Value::as_str) {
                Some(data) => bail!("{message} ({data})"),
                None => bail!("{message}"),
            }
        }
        return Ok(response.get_mut("result").map(Value::take).unwrap_or(Value::Null));
    }
}

/// A string field of a DevTools result.
fn string_field(result: &Value, field: &str) -> anyhow::Result<String> {
    result.get(field).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| anyhow!("no {field} in {result}"))
}

/// The Chromium process and its profile directory: on drop, the process is
/// killed and reaped, then the directory deleted.
struct Chromium {
    process: Child,
    // Dropped after `process` has been reaped (see `Drop`).
    directory: TempDir,
}

impl Chromium {
    /// Starts Chromium on a fresh profile; its output goes to
    /// `chromium.log` beside the profile, for the errors of `launch`.
    fn start(binary: &Path) -> anyhow::Result<Self> {
        let directory = TempDir::new()?;
        let log = std::fs::File::create(directory.log())?;
        let process = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", directory.profile().display()))
            .arg("about:blank")
            // A group of its own: its helper processes go with it.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self { process, directory })
    }

    /// Waits for `DevToolsActivePort` (line 1 the port, line 2 the browser
    /// endpoint's path) and returns the endpoint's URL; fails with
    /// Chromium's output if it exits first or takes longer than [`HANG_GUARD`].
    async fn devtools_endpoint(&mut self) -> anyhow::Result<String> {
        let file = self.directory.profile().join("DevToolsActivePort");
        let deadline = tokio::time::Instant::now() + HANG_GUARD;
        let failure = loop {
            // Read until both lines are there: it may be caught half-written.
            if let Ok(contents) = std::fs::read_to_string(&file)
                && let Some((port, path)) = contents.trim().split_once('\n')
                && let Ok(port) = port.parse::<u16>()
                && path.starts_with("/devtools/browser/")
            {
                return Ok(format!("ws://127.0.0.1:{port}{path}"));
            }
            if let Some(status) = self.process.try_wait()? {
                break format!("Chromium exited ({status}) before listening");
            }
            if tokio::time::Instant::now() >= deadline {
                break format!("Chromium wrote no {} within {HANG_GUARD:?}", file.display());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        let log = std::fs::read_to_string(self.directory.log()).unwrap_or_default();
        bail!("{failure}; its output:\n{log}")
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Killed and reaped before the profile goes, so that Chromium cannot
        // write into it while it is being deleted. Its helpers (renderer,
        // zygote) too: left to notice the browser's end, they wrote their
        // files again after the deletion, and the directories piled up in
        // the temporary directory. SIGKILL makes the wait short.
        let group = rustix::process::Pid::from_child(&self.process);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.process.wait();
    }
}

/// A fresh directory under the system's temporary directory, deleted on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!("wsplug-chromium-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        // A leftover from an earlier process with the same pid goes first.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("profile")).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    /// Chromium's `--user-data-dir`.
    fn profile(&self) -> PathBuf {
        self.0.join("profile")
    }

    /// Chromium's standard output and error.
    fn log(&self) -> PathBuf {
        self.0.join("chromium.log")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
