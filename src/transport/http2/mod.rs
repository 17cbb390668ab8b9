//! The HTTP/2 server under the gRPC services, on h2 directly.
//!
//! tonic's own server (hyper) hands a request body's bytes to h2's flow control
//! only as the service reads them, and leaves unread DATA frames queued inside
//! h2, which closes the whole connection (GOAWAY ENHANCE_YOUR_CALM) once too many
//! small ones wait. A PublishStream that stops reading to hold a fast client back
//! met that after about 2,300 records of 30 bytes, and every record on the
//! connection went unanswered. Here each connection's task moves request bodies
//! out of h2 every turn and returns window to the client only as the service
//! reads ([`request_body`]), so backpressure by flow control works for records of
//! any size, and what a connection holds is bounded by its windows:
//!
//! - per stream, at most `--http2-stream-window` bytes the service has not read;
//! - per connection, at most `--http2-connection-window` bytes in all (a stalled stream
//!   takes at most its own window of it, so other calls keep flowing), plus one
//!   turn's frames inside h2 ([`socket::READ_PER_TURN`]).
//!
//! At shutdown each connection sends GOAWAY, lets its streams finish, and closes
//! without a reset: it shuts its side down and reads what the client still sends
//! until the client closes too ([`socket`]), so answers already written reach a
//! client that keeps sending.

mod connection;
mod request_body;
mod respond;
mod socket;

pub use request_body::RequestBody;

use super::tls::Tls;
use crate::config::ServerConfig;
use bytes::Bytes;
use http_body::Body;
use std::{sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::codegen::http::{Request, Response};
use tracing::warn;

/// How long the accept loop waits after a failed accept (out of file
/// descriptors, usually), instead of spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `service` on `listener` until `shutdown` fires, then stops accepting and
/// returns once every connection has closed (each finishes its streams first).
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    settings: ServerConfig,
    tls: Option<Arc<Tls>>,
    shutdown: CancellationToken,
) where
    S: tower::Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display + Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let settings = Arc::new(settings);
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(err) => {
                warn!(%err, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // No Nagle: a small answer held back for the client's delayed ACK costs
        // some 40 ms. TCP keepalive finds peers gone without a word, as the HTTP/2
        // pings do for the connection's task.
        if let Err(err) = tcp.set_nodelay(true).and_then(|()| {
            let keepalive = socket2::TcpKeepalive::new().with_time(settings.keepalive_interval);
            socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive)
        }) {
            warn!(%err, "setting TCP options failed");
        }
        connections.spawn(connection::serve(
            tcp,
            tls.as_ref().map(|tls| tls.acceptor()),
            service.clone(),
            settings.clone(),
            shutdown.clone(),
        ));
    }
    // New clients are refused from here on, not left waiting in the backlog.
    drop(listener);
    connections.close();
    connections.wait().await;
}
