//! A minimal HTTP/1.1 client for the API tests: one request per connection, the request
//! target sent byte for byte (no client library would send the malformed ones).

use std::net::SocketAddr;
use std::sync::Arc;

use meterflow_api::{serve, ApiConfig};
use meterflow_store::SqliteStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `store` on an ephemeral loopback port (on the current runtime); its address.
pub async fn serve_on_loopback(store: SqliteStore, config: ApiConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(listener, Arc::new(store), config));
    addr
}

/// `METHOD target`: the status, the body as JSON (`Null` if it is not JSON) and as text.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
) -> (u16, serde_json::Value, String) {
    let (status, _, body) = exchange(addr, method, target).await;
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    (status, json, body)
}

/// `METHOD target`: the status, the response head (status line and headers, as text) and the
/// body.
pub async fn exchange(addr: SocketAddr, method: &str, target: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head[9..12].parse().expect("a status code");
    (status, head.to_string(), body.to_string())
}

#[allow(dead_code)] // not every test file uses both
pub async fn get(addr: SocketAddr, target: &str) -> (u16, serde_json::Value, String) {
    request(addr, "GET", target).await
}
