//! Client deadlines (`grpc-timeout`).
//!
//! The services apply the client's deadline themselves, a little before it
//! passes, so the client receives DEADLINE_EXCEEDED with a message saying what was
//! still pending rather than its own timer's CANCELLED. The deadline counts from
//! the request's arrival, stamped by [`StampArrival`](super::layers::StampArrival)
//! as the HTTP/2 server hands
//! the request over: counted from the handler's start instead (a service runs when
//! its task first runs, then decodes the request), on a busy machine the client's
//! timer could fire first.

use super::layers::Arrival;
use crate::error::Error;
use futures::Stream;
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::time::{Instant, Sleep};
use tonic::{Request, Status};

/// How much earlier than the client's deadline the gateway gives up: a twentieth
/// of the client's timeout, at least 5 ms and at most 50 ms. The answer must reach
/// the client before its own timer fires (tonic's client, like others, enforces
/// the deadline itself), and on a busy machine 5 ms was sometimes too little.
fn margin(timeout: Duration) -> Duration {
    (timeout / 20).clamp(Duration::from_millis(5), Duration::from_millis(50))
}

/// The client's deadline, counted from the request's arrival, if it sent one.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    /// Reads `grpc-timeout` from the request headers; the deadline counts from the
    /// request's arrival (or from now, for a request that was not stamped).
    pub fn of<T>(request: &Request<T>) -> Option<Deadline> {
        let header = request.metadata().get("grpc-timeout")?.to_str().ok()?;
        let timeout = parse_grpc_timeout(header)?;
        let arrival = Arrival::of(request).unwrap_or_else(Instant::now);
        Some(Deadline {
            at: arrival + timeout.saturating_sub(margin(timeout)),
            timeout,
        })
    }
}

/// Runs `work`, failing with DEADLINE_EXCEEDED if the deadline passes first.
pub async fn within<T, E: Into<Error>>(
    deadline: Option<Deadline>,
    what: &'static str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, Error> {
    match deadline {
        None => work.await.map_err(Into::into),
        Some(d) => match tokio::time::timeout_at(d.at, work).await {
            Ok(result) => result.map_err(Into::into),
            Err(_) => Err(Error::DeadlineExceeded(d.timeout, what)),
        },
    }
}

/// Ends a response stream with DEADLINE_EXCEEDED when the deadline passes.
pub struct DeadlineStream<S> {
    inner: S,
    deadline: Option<(Pin<Box<Sleep>>, Duration)>,
    ended: bool,
}

impl<S> DeadlineStream<S> {
    /// Bounds `inner` by `deadline`, if there is one.
    pub fn new(inner: S, deadline: Option<Deadline>) -> DeadlineStream<S> {
        DeadlineStream {
            inner,
            deadline: deadline.map(|d| (Box::pin(tokio::time::sleep_until(d.at)), d.timeout)),
            ended: false,
        }
    }
}

impl<T, S: Stream<Item = Result<T, Status>> + Unpin> Stream for DeadlineStream<S> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some((sleep, timeout)) = &mut self.deadline {
            if sleep.as_mut().poll(cx).is_ready() {
                let err = Error::DeadlineExceeded(*timeout, "the stream ended");
                self.ended = true;
                return Poll::Ready(Some(Err(err.into())));
            }
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("5n"), Some(Duration::from_nanos(5)));
    }

    #[test]
    fn the_margin_is_a_twentieth_of_the_timeout_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(margin(ms(300)), ms(15));
        assert_eq!(margin(ms(20)), ms(5));
        assert_eq!(margin(Duration::from_secs(30)), ms(50));
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in ["", "S", "10", "123456789S", "1x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
