//! An in-process CQL server for tests: the `kassandra` crate's in-memory engine behind a
//! CQL v4 listener on 127.0.0.1 and an ephemeral port.
//!
//! Why our own harness: `kassandra` ships only the engine and the frame codec; its
//! `kassandra-tester` crate is pinned to an older `kassandra`. The loop below is the whole
//! server: read a frame, hand it to the shared session, write the answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use kassandra::error::DbError;
use kassandra::frame::request::Request;
use kassandra::frame::response::{error::Error, Response};
use kassandra::frame::{request_stream, response_sink};
use kassandra::KassandraSession;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running server; stops when dropped.
pub struct Kassandra {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for Kassandra {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Kassandra {
    /// Binds a fresh in-memory server and waits until it accepts connections (a bounded
    /// poll, not a sleep).
    pub async fn start() -> Kassandra {
        Self::start_with(|stream, session| tokio::spawn(serve_client(stream, session))).await
    }

    /// The same server behind TLS: every connection is a TLS handshake with `acceptor` first
    /// (a failed handshake just drops the connection, as a real server does).
    pub async fn start_tls(acceptor: tokio_rustls::TlsAcceptor) -> Kassandra {
        Self::start_with(move |stream, session| {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    serve_client(tls, session).await;
                }
            })
        })
        .await
    }

    async fn start_with(
        serve: impl Fn(TcpStream, Arc<Mutex<KassandraSession>>) -> JoinHandle<()> + Send + 'static,
    ) -> Kassandra {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for kassandra");
        let addr = listener.local_addr().expect("kassandra's address");
        let session = Arc::new(Mutex::new(KassandraSession::new()));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                serve(stream, session.clone());
            }
        });
        let server = Kassandra { addr, accept };
        server.wait_ready(Duration::from_secs(10)).await;
        server
    }

    async fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            match TcpStream::connect(self.addr).await {
                Ok(_) => return,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("kassandra at {} not ready yet: {e}", self.addr);
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!(
                    "kassandra at {} never accepted a connection: {e}",
                    self.addr
                ),
            }
        }
    }
}

async fn serve_client<S>(stream: S, session: Arc<Mutex<KassandraSession>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let mut frames = request_stream(read);
    let mut sink = response_sink(write);
    while let Some(Ok((frame, opcode, data))) = frames.next().await {
        let response = if frame.version.is_unsupported() {
            // Makes the driver fall back to protocol v4, the only one kassandra speaks.
            Response::unsupported_version()
        } else {
            match Request::deserialize(opcode, &data, frame.flags) {
                Ok(request) => answer(request, &session),
                Err(e) => Response::Error(e),
            }
        };
        if sink.send((response, frame.stream)).await.is_err() {
            return;
        }
    }
}

fn answer(request: Request<'_>, session: &Mutex<KassandraSession>) -> Response {
    let Ok(mut kass) = session.lock() else {
        return Response::Error(Error::new(DbError::ServerError, "kassandra lock poisoned"));
    };
    let result = match request {
        Request::StartUp(_) | Request::Register { .. } => return Response::Ready,
        Request::Options => return Response::options(),
        Request::Query(q) => kass.process(q),
        Request::Prepare(q) => kass.prepare(q),
        Request::Execute(e) => kass.execute(e),
        Request::Batch(b) => kass.process_batch(b),
        Request::AuthResponse => {
            return Response::Error(Error::new(
                DbError::ProtocolError,
                "kassandra has no authentication",
            ))
        }
    };
    match result {
        Ok(r) => Response::Result(r),
        Err(e) => Response::Error(e),
    }
}
