//! The baseline: a plain tokio-tungstenite echo server, the best a native
//! Rust server does with the same WebSocket stack. Run as
//! `wsplug-bench native-echo`; it prints `listening on ADDR`.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;

pub fn serve() -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (tcp, _) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(tcp).await else { return };
                while let Some(Ok(message)) = socket.next().await {
                    if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}
