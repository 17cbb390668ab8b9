//! One client connection: the h2 handshake, then a task that reads frames, starts
//! a [`respond`](super::respond) task per stream, moves request bodies out of h2
//! every turn, pings the client, and closes gracefully at shutdown.

use super::{
    request_body::{BodySignal, Inbox, RequestBody},
    respond,
    socket::{Io, Socket, FRAME_BUDGET, READ_PER_TURN},
};
use crate::{config::ServerConfig, kafka::ConsumerShare};
use bytes::Bytes;
use futures::{future::Either, task::AtomicWaker};
use http_body::Body;
use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll, Waker},
};
use tokio::{net::TcpStream, time::Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::{
    codegen::http::{Request, Response},
    transport::server::TcpConnectInfo,
};
use tracing::debug;

/// Largest header block a client may send (hyper's default, which the gateway
/// used before): names, topics and tokens fit many times over.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// Response bytes h2 buffers per stream before the stream waits for the client's
/// window (hyper's default).
const MAX_SEND_BUFFER_BYTES: usize = 400 * 1024;

/// Streams the client reset before the gateway accepted them, at most at once;
/// with the limit below, a bound on floods of reset streams ("rapid reset").
const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

/// Streams the gateway may reset for a client's protocol errors before it closes
/// the connection.
const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// Serves one TCP connection until the client closes it, it fails, the client
/// stops answering pings, or `shutdown` fires and its last stream is done.
pub(super) async fn serve<S, B>(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    service: S,
    settings: Arc<ServerConfig>,
    shutdown: CancellationToken,
) where
    S: tower::Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display + Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let info = TcpConnectInfo {
        local_addr: tcp.local_addr().ok(),
        remote_addr: tcp.peer_addr().ok(),
    };
    let allowance = Arc::new(AtomicUsize::new(READ_PER_TURN));
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(settings.http2_stream_window)
        .initial_connection_window_size(settings.http2_connection_window)
        .max_concurrent_streams(settings.max_streams_per_connection)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .max_send_buffer_size(MAX_SEND_BUFFER_BYTES)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESET_STREAMS))
        .data_frame_budget(FRAME_BUDGET);
    // A client that connects and never speaks TLS or HTTP/2 would hold its socket
    // and task for good: both handshakes share one time limit.
    let handshakes = async {
        let io = match tls {
            Some(acceptor) => match acceptor.accept(tcp).await {
                Ok(stream) => Io::Tls(Box::new(stream)),
                Err(err) => return Err(format!("TLS handshake failed: {err}")),
            },
            None => Io::Plain(tcp),
        };
        builder
            .handshake(Socket::new(io, allowance.clone()))
            .await
            .map_err(|err| format!("HTTP/2 handshake failed: {err}"))
    };
    let h2 = match tokio::time::timeout(settings.keepalive_timeout, handshakes).await {
        Ok(Ok(h2)) => h2,
        Ok(Err(err)) => return debug!(%err, "connection refused"),
        Err(_) => return debug!("no TLS and HTTP/2 handshake in time; closing"),
    };
    let mut connection = Connection {
        h2,
        service,
        info,
        consumers: ConsumerShare::new(),
        allowance,
        bodies: Vec::new(),
        woken: Arc::new(AtomicWaker::new()),
        keepalive: Keepalive::new(&settings),
        shutdown: Box::pin(shutdown.cancelled_owned()),
        shutting_down: false,
    };
    if let Some(pings) = connection.h2.ping_pong() {
        connection.keepalive.pings = Some(pings);
    }
    match std::future::poll_fn(|cx| connection.poll_turn(cx)).await {
        Ok(()) => debug!("connection closed"),
        Err(Closed::Failed(err)) => debug!(%err, "connection failed"),
        Err(Closed::Unresponsive) => {
            debug!("client did not answer a ping in time; connection closed")
        }
    }
}

/// Why a connection ended other than by a clean close.
enum Closed {
    Failed(h2::Error),
    Unresponsive,
}

struct Connection<S> {
    h2: h2::server::Connection<Socket, Bytes>,
    service: S,
    info: TcpConnectInfo,
    /// The connection's share of the gateway's consumers, for every stream on it.
    consumers: ConsumerShare,
    /// Bytes h2 may still read this turn (see [`Socket`]).
    allowance: Arc<AtomicUsize>,
    /// Request bodies the client has not ended yet.
    bodies: Vec<OpenBody>,
    /// This task, for a service that drops its request body.
    woken: Arc<AtomicWaker>,
    keepalive: Keepalive,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    shutting_down: bool,
}

/// A request body the connection task drains into its inbox.
struct OpenBody {
    stream: h2::RecvStream,
    inbox: Arc<Inbox>,
    /// Raises the inbox's signal: h2 wakes it when this stream has news.
    waker: Waker,
}

impl<S, B> Connection<S>
where
    S: tower::Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display + Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    /// One turn: read up to [`READ_PER_TURN`] bytes of frames, start the new
    /// streams, then move every request body's frames out of h2.
    fn poll_turn(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        self.allowance.store(READ_PER_TURN, Ordering::Relaxed);
        self.woken.register(cx.waker());
        if !self.shutting_down && self.shutdown.as_mut().poll(cx).is_ready() {
            // GOAWAY: no new streams; the open ones finish (the services end
            // theirs at shutdown), then h2 closes.
            self.shutting_down = true;
            self.h2.graceful_shutdown();
        }
        let accepted = loop {
            match self.h2.poll_accept(cx) {
                Poll::Ready(Some(Ok((request, reply)))) => self.start(request, reply, cx),
                Poll::Ready(Some(Err(err))) => break Poll::Ready(Err(Closed::Failed(err))),
                Poll::Ready(None) => break Poll::Ready(Ok(())),
                Poll::Pending => break Poll::Pending,
            }
        };
        self.bodies.retain_mut(OpenBody::drain);
        if accepted.is_pending() && self.keepalive.poll_unresponsive(cx).is_ready() {
            return Poll::Ready(Err(Closed::Unresponsive));
        }
        accepted
    }

    fn start(
        &mut self,
        request: Request<h2::RecvStream>,
        reply: h2::server::SendResponse<Bytes>,
        cx: &mut Context<'_>,
    ) {
        let (mut head, mut stream) = request.into_parts();
        head.extensions.insert(self.info.clone());
        head.extensions.insert(self.consumers.clone());
        let ended = stream.is_end_stream();
        let signal = BodySignal::new(self.woken.clone());
        let inbox = Arc::new(Inbox::new(ended, signal.clone()));
        let body = RequestBody::new(inbox.clone(), stream.flow_control().clone());
        if !ended {
            self.bodies.push(OpenBody {
                stream,
                inbox: inbox.clone(),
                waker: Waker::from(signal),
            });
        }
        let request = Request::from_parts(head, body);
        // Called here when the service is ready, as it always is: the call stamps
        // the request's arrival, from which its deadline counts, and a spawned
        // task may wait on a busy machine before it first runs.
        let mut service = self.service.clone();
        let call = match service.poll_ready(cx) {
            Poll::Ready(Ok(())) => Either::Left(service.call(request)),
            Poll::Ready(Err(err)) => Either::Right(Either::Left(std::future::ready(Err(err)))),
            Poll::Pending => Either::Right(Either::Right(async move {
                std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                service.call(request).await
            })),
        };
        tokio::spawn(respond::respond(call, reply));
    }
}

impl Drop for OpenBody {
    /// A connection that ends before the body did (a client found unresponsive, a
    /// write error) fails it, so a service waiting for more is woken; after the
    /// body's end this changes nothing.
    fn drop(&mut self) {
        self.inbox.fail(h2::Error::from(h2::Reason::CANCEL));
    }
}

impl OpenBody {
    /// Moves what h2 holds of this body into its inbox, if its signal says there
    /// is news; false once the body is over (ended or failed) or the service
    /// dropped it. Dropped, the h2 stream ignores what still comes: the stream's
    /// window is not given back, so the client sends no more on it, and the
    /// answer goes on; once it is sent, h2 asks the client to stop (RST_STREAM
    /// NO_ERROR, after the answer's frames).
    fn drain(&mut self) -> bool {
        if !self.inbox.signal.take() {
            return true;
        }
        if self.inbox.reader_gone() {
            return false;
        }
        let cx = &mut Context::from_waker(&self.waker);
        loop {
            match self.stream.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => self.inbox.push(data),
                Poll::Ready(Some(Err(err))) => {
                    self.inbox.fail(err);
                    return false;
                }
                Poll::Ready(None) => {
                    return match self.stream.poll_trailers(cx) {
                        Poll::Ready(Ok(trailers)) => {
                            self.inbox.finish(trailers);
                            false
                        }
                        Poll::Ready(Err(err)) => {
                            self.inbox.fail(err);
                            false
                        }
                        Poll::Pending => true,
                    };
                }
                Poll::Pending => return true,
            }
        }
    }
}

/// HTTP/2 pings to a client, to find connections whose client vanished.
struct Keepalive {
    pings: Option<h2::PingPong>,
    interval: std::time::Duration,
    timeout: std::time::Duration,
    /// When the next ping is due, or, while one is unanswered, when it is late.
    timer: Pin<Box<Sleep>>,
    awaiting_pong: bool,
}

impl Keepalive {
    fn new(settings: &ServerConfig) -> Keepalive {
        Keepalive {
            pings: None,
            interval: settings.keepalive_interval,
            timeout: settings.keepalive_timeout,
            timer: Box::pin(tokio::time::sleep(settings.keepalive_interval)),
            awaiting_pong: false,
        }
    }

    /// Ready when a ping went unanswered for the keepalive timeout.
    fn poll_unresponsive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(pings) = &mut self.pings else {
            return Poll::Pending;
        };
        loop {
            if self.awaiting_pong {
                match pings.poll_pong(cx) {
                    Poll::Ready(Ok(_)) => {
                        self.awaiting_pong = false;
                        let next = tokio::time::Instant::now() + self.interval;
                        self.timer.as_mut().reset(next);
                    }
                    // The connection is closing; h2 reports why elsewhere.
                    Poll::Ready(Err(_)) => {
                        self.pings = None;
                        return Poll::Pending;
                    }
                    Poll::Pending => {}
                }
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if self.awaiting_pong {
                return Poll::Ready(());
            }
            if pings.send_ping(h2::Ping::opaque()).is_err() {
                self.pings = None;
                return Poll::Pending;
            }
            self.awaiting_pong = true;
            let late = tokio::time::Instant::now() + self.timeout;
            self.timer.as_mut().reset(late);
        }
    }
}
