//! JSON bodies for the answers hyper gives before the router sees a request.
//!
//! A request hyper cannot parse (not HTTP, a URI too long, too many or too large headers) is
//! answered by hyper itself with 400, 414 or 431 and an empty body. Every other client
//! mistake gets `{"error": ...}` saying what to fix, so [`JsonParseErrors`] wraps each
//! connection and rewrites exactly those answers on their way out: a response head of one of
//! those statuses with `content-length: 0`, which the router never sends (its errors always
//! have a body). Everything else passes through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose hyper-made error answers carry a JSON body.
pub struct JsonParseErrors<T> {
    inner: T,
    /// A rewritten answer being written, and the length of what it replaces (reported as
    /// written once it all is).
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<T> JsonParseErrors<T> {
    pub fn new(inner: T) -> Self {
        JsonParseErrors {
            inner,
            pending: None,
        }
    }
}

/// The body for a status hyper answers on its own.
fn message(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "the request is not valid HTTP/1.1; send GET /meters/{meter}/daily?from=YYYY-MM-DD&to=YYYY-MM-DD (see /openapi.json)",
        414 => "the request's URI is too long; a meter id is short and the daily route takes only from and to",
        431 => "the request's headers are too many or too large; send fewer and smaller headers",
        _ => return None,
    })
}

/// The JSON version of `head` when it is an empty-bodied answer of hyper's own.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let text = text.strip_suffix("\r\n\r\n")?;
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    let status: u16 = rest.get(..3)?.parse().ok()?;
    let msg = message(status)?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut empty = false;
    let mut out = format!("{status_line}\r\n");
    for line in lines {
        if line.eq_ignore_ascii_case("content-length: 0") {
            empty = true;
        } else {
            out += line;
            out += "\r\n";
        }
    }
    if !empty {
        return None;
    }
    let body = serde_json::json!({ "error": msg }).to_string();
    out += &format!(
        "content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    Some(out.into_bytes())
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonParseErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // While Pending, the caller calls again with the same `buf`, as the trait requires.
        let (bytes, mut written, replaces) = match this.pending.take() {
            Some(pending) => pending,
            None => match rewrite(buf) {
                Some(bytes) => (bytes, 0, buf.len()),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            },
        };
        while written < bytes.len() {
            match Pin::new(&mut this.inner).poll_write(cx, &bytes[written..]) {
                Poll::Pending => {
                    this.pending = Some((bytes, written, replaces));
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => written += n,
            }
        }
        Poll::Ready(Ok(replaces))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP listener whose connections are [`JsonParseErrors`].
pub struct Listener(pub tokio::net::TcpListener);

impl axum::serve::Listener for Listener {
    type Io = JsonParseErrors<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (JsonParseErrors::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_empty_bodied_parse_errors_are_rewritten() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(rewrite(head).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "));
        assert!(head.contains("connection: close\r\n") && head.contains("date: x\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(json["error"].as_str().unwrap().contains("headers"));
        for untouched in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            b"{\"error\":\"x\"}",
        ] {
            assert_eq!(rewrite(untouched), None);
        }
    }
}
