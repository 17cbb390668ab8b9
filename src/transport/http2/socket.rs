//! The connection under h2 (TCP, or TLS over TCP): reads paced per turn of the
//! connection task, and a lingering close.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::Sleep,
};
use tokio_rustls::server::TlsStream;

/// Bytes h2 may read in one turn of the connection task, which then moves the
/// frames out of h2 before it reads more. h2 holds each frame as an event of
/// about 256 bytes until then, so a turn holds at most `READ_PER_TURN` frames.
pub const READ_PER_TURN: usize = 16 * 1024;

/// h2's budget for the framing overhead of small DATA frames, in effect none.
/// h2 also charges it for frames that arrive on a stream after the service
/// dropped its body or after h2 reset the stream, and never gives those back: any
/// finite budget ran out over a connection's life once a few streams of small
/// records ended while their client was still sending (20,000 one-byte frames
/// after an answer cost 5 MB of it), and h2 then closed the whole connection
/// with GOAWAY ENHANCE_YOUR_CALM. What h2 holds is bounded here instead: the
/// connection task moves every frame out each turn and a turn reads at most
/// [`READ_PER_TURN`] bytes; frames of a dropped body are discarded.
pub const FRAME_BUDGET: usize = usize::MAX / 4;

/// How long a closing connection still reads (and discards) what the client
/// sends after the gateway's last frame. Closing a socket with unread bytes
/// makes the kernel reset the connection, and a client then drops the answers
/// it had received but not read yet.
const LINGER: Duration = Duration::from_secs(2);

/// The byte stream of a connection: plain TCP, or TLS over it.
pub(super) enum Io {
    /// Plaintext.
    Plain(TcpStream),
    /// TLS, after its handshake.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Calls `$call` on the stream inside an [`Io`], pinned.
macro_rules! on_io {
    ($io:expr, $stream:ident => $call:expr) => {
        match $io {
            Io::Plain($stream) => {
                let $stream = Pin::new($stream);
                $call
            }
            Io::Tls($stream) => {
                let $stream = Pin::new($stream.as_mut());
                $call
            }
        }
    };
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        on_io!(self.get_mut(), s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        on_io!(self.get_mut(), s => s.poll_write(cx, data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_io!(self.get_mut(), s => s.poll_write_vectored(cx, data))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(tcp) => tcp.is_write_vectored(),
            Io::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_io!(self.get_mut(), s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_io!(self.get_mut(), s => s.poll_shutdown(cx))
    }
}

/// The connection's stream as h2 sees it.
pub(super) struct Socket {
    tcp: Io,
    /// What may still be read in this turn; the connection task refills it.
    allowance: Arc<AtomicUsize>,
    closing: Closing,
}

enum Closing {
    Open,
    /// Our side is shut down; reading until the client closes or the time is up.
    Lingering(Pin<Box<Sleep>>),
    Closed,
}

impl Socket {
    /// Wraps `tcp`; reads are limited by `allowance`, which the connection task
    /// sets to [`READ_PER_TURN`] each turn.
    pub(super) fn new(tcp: Io, allowance: Arc<AtomicUsize>) -> Socket {
        Socket {
            tcp,
            allowance,
            closing: Closing::Open,
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let allowed = self.allowance.load(Ordering::Relaxed);
        if allowed == 0 {
            // The turn's bytes are read: yield, so the connection task empties h2
            // and is polled again.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let limit = allowed.min(buf.remaining());
        // Zeroes what of the limit is not initialized yet (at most 16 KiB a read),
        // so that the read below needs no unsafe code to hand its bytes back.
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(limit));
        let polled = Pin::new(&mut self.tcp).poll_read(cx, &mut limited);
        let read = limited.filled().len();
        if let Poll::Ready(Ok(())) = polled {
            buf.advance(read);
            self.allowance.fetch_sub(read, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    /// h2 shuts the socket down once its last frame (GOAWAY) is written. The
    /// client may still be sending: our side is shut down (the client reads every
    /// frame, then end of stream) and what arrives is read and dropped until the
    /// client closes too, for at most [`LINGER`].
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.closing {
                Closing::Open => {
                    if let Err(err) = std::task::ready!(Pin::new(&mut self.tcp).poll_shutdown(cx)) {
                        self.closing = Closing::Closed;
                        return Poll::Ready(Err(err));
                    }
                    self.closing = Closing::Lingering(Box::pin(tokio::time::sleep(LINGER)));
                }
                Closing::Lingering(timer) => {
                    if timer.as_mut().poll(cx).is_ready() {
                        self.closing = Closing::Closed;
                        continue;
                    }
                    let mut discard = [0u8; 4096];
                    let mut sink = ReadBuf::new(&mut discard);
                    match std::task::ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut sink)) {
                        Ok(()) if !sink.filled().is_empty() => continue,
                        // End of stream or an error: the client is gone.
                        _ => self.closing = Closing::Closed,
                    }
                }
                Closing::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}
