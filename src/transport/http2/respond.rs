//! One stream's task: calls the service and sends its response (headers, DATA
//! within the client's window, trailers), and stops when the client resets the
//! stream.

use bytes::Bytes;
use http_body::Body;
use std::{future::Future, pin::pin, task::Poll};
use tonic::codegen::http::Response;
use tracing::debug;

/// Runs `call`, the service's answer to a request, and sends its response on
/// `reply`. A client reset drops the call (so a handler notices its client left).
/// A response that ends before the client finished its request needs nothing
/// more: once every handle of the stream is dropped, h2 sends RST_STREAM NO_ERROR
/// after the response's last frame, as HTTP/2 says for an early answer (a reset
/// sent from here would drop response frames h2 still holds).
pub(super) async fn respond<F, B, E>(call: F, mut reply: h2::server::SendResponse<Bytes>)
where
    F: Future<Output = Result<Response<B>, E>>,
    E: std::fmt::Display,
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let mut call = pin!(call);
    let response = std::future::poll_fn(|cx| {
        if let Poll::Ready(reset) = reply.poll_reset(cx) {
            return Poll::Ready(Err(reset));
        }
        call.as_mut().poll(cx).map(Ok)
    })
    .await;
    let response = match response {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => {
            debug!(%err, "service failed");
            reply.send_reset(h2::Reason::INTERNAL_ERROR);
            return;
        }
        Err(reset) => {
            debug!(?reset, "stream reset by the client before its answer");
            return;
        }
    };
    let (head, body) = response.into_parts();
    let head = Response::from_parts(head, ());
    if body.is_end_stream() {
        if let Err(err) = reply.send_response(head, true) {
            debug!(%err, "could not send the response");
        }
        return;
    }
    let mut send = match reply.send_response(head, false) {
        Ok(send) => send,
        Err(err) => {
            debug!(%err, "could not send the response");
            reply.send_reset(h2::Reason::INTERNAL_ERROR);
            return;
        }
    };
    match send_body(body, &mut send).await {
        Ok(()) => {}
        Err(Unsent::Reset(reason)) => debug!(?reason, "stream reset by the client"),
        Err(Unsent::Failed(err)) => debug!(%err, "could not send the response body"),
        Err(Unsent::Body(err)) => {
            debug!(%err, "response body failed");
            send.send_reset(h2::Reason::INTERNAL_ERROR);
        }
    }
}

/// Why a response body was not sent whole.
enum Unsent {
    /// The client reset the stream.
    Reset(h2::Reason),
    /// h2 could not send (the connection is gone).
    Failed(h2::Error),
    /// The body itself failed.
    Body(String),
}

impl From<h2::Error> for Unsent {
    fn from(err: h2::Error) -> Unsent {
        match err.reason() {
            Some(reason) if err.is_reset() => Unsent::Reset(reason),
            _ => Unsent::Failed(err),
        }
    }
}

/// Sends `body` frame by frame, each DATA frame once the client's window has
/// room for some of it (h2 buffers the rest, up to its send buffer per stream).
async fn send_body<B>(body: B, send: &mut h2::SendStream<Bytes>) -> Result<(), Unsent>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let mut body = pin!(body);
    loop {
        let frame = std::future::poll_fn(|cx| {
            if let Poll::Ready(reset) = send.poll_reset(cx) {
                return Poll::Ready(Err(match reset {
                    Ok(reason) => Unsent::Reset(reason),
                    Err(err) => Unsent::from(err),
                }));
            }
            body.as_mut().poll_frame(cx).map(Ok)
        })
        .await?;
        let Some(frame) = frame else {
            // No trailers: end the stream with an empty DATA frame.
            return Ok(send.send_data(Bytes::new(), true)?);
        };
        let frame = frame.map_err(|e| Unsent::Body(e.to_string()))?;
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.reserve_capacity(0);
                    return Ok(send.send_trailers(trailers)?);
                }
                continue;
            }
        };
        let end = body.is_end_stream();
        if !data.is_empty() {
            // Claim a little of the window, not the whole chunk: a claim on the
            // connection window that waits can hold back other streams.
            send.reserve_capacity(1);
            while send.capacity() == 0 {
                match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Err(err.into()),
                    None => return Err(Unsent::Reset(h2::Reason::CANCEL)),
                }
            }
        }
        send.send_data(data, end)?;
        if end {
            return Ok(());
        }
    }
}
