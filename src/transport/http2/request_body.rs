//! A request's body as the service reads it.
//!
//! The connection task moves every DATA frame out of h2 as soon as it arrives
//! (into an [`Inbox`]), but gives the bytes back to the client's flow-control
//! window only when the service takes them ([`RequestBody`]). So a stream whose
//! service stops reading holds the client back by flow control as before, while
//! h2 itself holds none of its frames: h2 keeps each unread DATA frame as an event
//! of about 256 bytes, and closes the whole connection (GOAWAY ENHANCE_YOUR_CALM)
//! once unread small frames exceed its budget, which a stalled stream of small
//! gRPC messages reached after about 2,300 of them. Here a stream holds at most its
//! window in bytes, small frames packed together.

use bytes::{Bytes, BytesMut};
use futures::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    task::{Context, Poll, Wake, Waker},
};
use tonic::codegen::http::HeaderMap;

/// Frames smaller than this are copied together, so a stream of small frames costs
/// its bytes and not an allocation and a queue entry per frame. It is also the
/// size of h2's read buffer: a frame as h2 hands it over keeps the part of that
/// buffer it was cut from alive, so a larger frame pins at most about twice its
/// size, while one of 1 KiB kept as it is could pin 8 to 16 times as much.
const PACK_BELOW: usize = 8 * 1024;

/// The most the service is given in one piece.
const MAX_PIECE: usize = 64 * 1024;

/// Tells the connection task that one body needs a look: h2 has frames or the
/// end for it (h2 wakes it as the body's waker), or its reader went away. A turn
/// then skips the bodies with nothing new rather than take h2's lock for each of
/// the connection's open streams.
pub(super) struct BodySignal {
    due: AtomicBool,
    connection: Arc<AtomicWaker>,
}

impl BodySignal {
    /// A signal that is due at first, so a new body gets its first look.
    pub(super) fn new(connection: Arc<AtomicWaker>) -> Arc<BodySignal> {
        Arc::new(BodySignal {
            due: AtomicBool::new(true),
            connection,
        })
    }

    /// Whether the body needs a look; clears the signal.
    pub(super) fn take(&self) -> bool {
        self.due.swap(false, Ordering::AcqRel)
    }
}

impl Wake for BodySignal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.due.store(true, Ordering::Release);
        self.connection.wake();
    }
}

/// What the connection task has drained of one request body and the service has
/// not taken yet.
pub(super) struct Inbox {
    state: Mutex<InboxState>,
    /// Raised when the service drops the body.
    pub(super) signal: Arc<BodySignal>,
}

#[derive(Default)]
struct InboxState {
    /// Large frames, as h2 gave them.
    pieces: VecDeque<Bytes>,
    /// Small frames that came after the last large one, packed.
    packed: BytesMut,
    /// Whether the client ended the body, and with which trailers.
    end: Option<End>,
    /// The service, waiting for more.
    reader: Option<Waker>,
    /// The service dropped the body: what still comes is discarded.
    reader_gone: bool,
}

enum End {
    /// The body ended; trailers, if any, not yet taken.
    Done(Option<HeaderMap>),
    /// The stream failed (reset by the client, connection lost).
    Failed(h2::Error),
}

impl Inbox {
    /// An inbox for a body that `ended` already (a request without one) or is open.
    pub(super) fn new(ended: bool, signal: Arc<BodySignal>) -> Inbox {
        Inbox {
            state: Mutex::new(InboxState {
                end: ended.then_some(End::Done(None)),
                ..InboxState::default()
            }),
            signal,
        }
    }

    fn state(&self) -> MutexGuard<'_, InboxState> {
        // The lock guards plain data and no code panics while holding it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a DATA frame's payload; dropped when the service is gone (the bytes
    /// stay counted against the stream's window, so the client is not invited to
    /// send more).
    pub(super) fn push(&self, data: Bytes) {
        let mut state = self.state();
        if state.reader_gone {
            return;
        }
        if data.len() < PACK_BELOW {
            state.packed.extend_from_slice(&data);
        } else {
            if !state.packed.is_empty() {
                let packed = state.packed.split().freeze();
                state.pieces.push_back(packed);
            }
            state.pieces.push_back(data);
        }
        if let Some(reader) = state.reader.take() {
            reader.wake();
        }
    }

    /// The body ended, with `trailers` if the client sent any.
    pub(super) fn finish(&self, trailers: Option<HeaderMap>) {
        self.end(End::Done(trailers));
    }

    /// The stream failed.
    pub(super) fn fail(&self, error: h2::Error) {
        self.end(End::Failed(error));
    }

    fn end(&self, end: End) {
        let mut state = self.state();
        state.end.get_or_insert(end);
        if let Some(reader) = state.reader.take() {
            reader.wake();
        }
    }

    /// Whether the service dropped the body.
    pub(super) fn reader_gone(&self) -> bool {
        self.state().reader_gone
    }
}

/// The request body handed to the service. Bytes it takes are given back to the
/// client's flow-control window.
pub struct RequestBody {
    inbox: Arc<Inbox>,
    flow: h2::FlowControl,
}

impl RequestBody {
    pub(super) fn new(inbox: Arc<Inbox>, flow: h2::FlowControl) -> RequestBody {
        RequestBody { inbox, flow }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = &mut *self;
        let mut guard = this.inbox.state();
        let state = &mut *guard;
        let piece = match state.pieces.front_mut() {
            Some(front) if front.len() > MAX_PIECE => Some(front.split_to(MAX_PIECE)),
            Some(_) => state.pieces.pop_front(),
            None if !state.packed.is_empty() => {
                let take = state.packed.len().min(MAX_PIECE);
                Some(state.packed.split_to(take).freeze())
            }
            None => None,
        };
        if let Some(piece) = piece {
            drop(guard);
            // Only fails if h2 forgot the bytes (the stream is gone), when there is
            // no window left to give back.
            let _ = this.flow.release_capacity(piece.len());
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        match &mut state.end {
            Some(End::Done(trailers)) => {
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            Some(End::Failed(error)) => {
                let error = std::mem::replace(error, h2::Error::from(h2::Reason::CANCEL));
                Poll::Ready(Some(Err(error)))
            }
            None => {
                state.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let state = self.inbox.state();
        state.pieces.is_empty()
            && state.packed.is_empty()
            && matches!(state.end, Some(End::Done(None)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let mut state = self.inbox.state();
        state.reader_gone = true;
        state.pieces.clear();
        state.packed = BytesMut::new();
        drop(state);
        self.inbox.signal.wake_by_ref();
    }
}
