//! A minimal HTTP/1.1 client for the API tests: one request per connection, the request
//! target sent byte for byte (no client library would send the malformed ones).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `METHOD target`: the status, the body as JSON (`Null` if it is not JSON) and as text.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
) -> (u16, serde_json::Value, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head[9..12].parse().expect("a status code");
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status, json, body.to_string())
}

#[allow(dead_code)] // not every test file uses both
pub async fn get(addr: SocketAddr, target: &str) -> (u16, serde_json::Value, String) {
    request(addr, "GET", target).await
}
