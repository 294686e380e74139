//! The sample config file in the repository serves what it says.

use futures_util::SinkExt;
use std::path::Path;
use tokio_tungstenite::tungstenite::Message;
use wsplug::Config;
use wsplug_tests::{TestServer, receive_text};

#[tokio::test]
async fn the_sample_config_serves_the_greeter_and_the_ticker() -> anyhow::Result<()> {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wsplug.toml");
    let config = Config::from_file(&sample)?;
    assert_eq!(config.routes.len(), 2);
    let server = TestServer::start_with(config).await?;
    let mut greeter = server.connect("/greeter").await?;
    greeter.send(Message::text("Peter")).await?;
    assert_eq!(receive_text(&mut greeter).await?, "Hello Peter!");
    let mut ticker = server.connect("/ticker?interval_ms=10").await?;
    assert_eq!(receive_text(&mut ticker).await?, "tick 1");
    Ok(())
}
