//! The chat demo as its users see it: headless Chromium opens the page that
//! wsplug serves, as two separate users, and one sees what the other says.
//! Needs Chromium (`apt-get install chromium`; `make test` installs it).

use std::path::Path;
use std::time::Duration;
use wsplug::{RouteConfig, StaticDir};
use wsplug_tests::browser::{Browser, Page};
use wsplug_tests::{TestServer, config_with, example};

/// Long enough for a page to load and a message to go round; a guard
/// against hanging, not a performance threshold.
const WAIT: Duration = Duration::from_secs(15);

/// Waits until the page's message log has an entry `text`.
async fn shows(page: &Page, text: &str) -> anyhow::Result<()> {
    let condition = format!("[...document.querySelectorAll('#log li')].some(item => item.textContent === {text:?})");
    page.wait_for(&condition, WAIT).await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_people_chat_in_the_browser() -> anyhow::Result<()> {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-examples/chat/web");
    let mut config = config_with([RouteConfig::new("/chat", example("chat"))]);
    config.static_dirs.push(StaticDir { path: "/".into(), dir: web });
    let server = TestServer::start_with(config).await?;
    let browser = Browser::launch().await?;

    let ann = browser.new_page(&format!("http://{}/?room=lobby&name=Ann", server.address)).await?;
    shows(&ann, "* Ann joined").await?;
    let bob = browser.new_page(&format!("http://{}/?room=lobby&name=Bob", server.address)).await?;
    shows(&bob, "* Bob joined").await?;
    shows(&ann, "* Bob joined").await?;

    // Bob types a message and presses Send.
    bob.eval("document.getElementById('message').value = 'hello from Bob'; document.getElementById('send-form').requestSubmit(); true")
        .await?;
    shows(&ann, "Bob: hello from Bob").await?;
    shows(&bob, "Bob: hello from Bob").await?;

    bob.close().await?;
    shows(&ann, "* Bob left").await
}

/// A real browser offers permessage-deflate: it is negotiated, and large
/// messages go both ways compressed (the echo sends them back whole) while
/// small ones go plain.
#[tokio::test(flavor = "multi_thread")]
async fn the_browser_negotiates_compression_and_messages_round_trip() -> anyhow::Result<()> {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-examples/chat/web");
    let mut config = config_with([RouteConfig::new("/echo", example("echo"))]);
    config.static_dirs.push(StaticDir { path: "/".into(), dir: web });
    let server = TestServer::start_with(config).await?;
    let browser = Browser::launch().await?;
    let page = browser.new_page(&format!("http://{}/", server.address)).await?;
    let result = page
        .eval(
            "new Promise((resolve, reject) => {
               const socket = new WebSocket(`ws://${location.host}/echo`);
               const large = JSON.stringify(Array.from({ length: 2000 }, (_, id) => ({ id, user: 'ann', text: 'hello' })));
               const sent = ['hi', large];
               const received = [];
               socket.onopen = () => sent.forEach(message => socket.send(message));
               socket.onmessage = event => {
                 received.push(event.data);
                 if (received.length === sent.length) {
                   resolve({ extensions: socket.extensions, echoed: received.every((text, i) => text === sent[i]) });
                 }
               };
               socket.onerror = () => reject(new Error('WebSocket error'));
             })",
        )
        .await?;
    assert_eq!(result["extensions"], "permessage-deflate", "{result}");
    assert_eq!(result["echoed"], true, "{result}");
    page.close().await
}
