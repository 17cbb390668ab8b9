//! Stamps each request with its arrival, from which client deadlines count
//! ([`deadline`](super::super::deadline) tells why).

use std::task::{Context, Poll};
use tokio::time::Instant;
use tonic::{codegen::http, Request};

/// When a request arrived, in its extensions.
#[derive(Debug, Clone, Copy)]
pub struct Arrival(Instant);

impl Arrival {
    /// When `request` arrived, if [`StampArrival`] saw it.
    pub fn of<T>(request: &Request<T>) -> Option<Instant> {
        request.extensions().get::<Arrival>().map(|a| a.0)
    }
}

/// Layer that stamps each request with its arrival; the HTTP/2 server calls it as
/// soon as the request's headers are in.
#[derive(Debug, Clone, Copy, Default)]
pub struct StampArrival;

impl<S> tower::Layer<S> for StampArrival {
    type Service = Stamped<S>;

    fn layer(&self, inner: S) -> Stamped<S> {
        Stamped(inner)
    }
}

/// A service whose requests [`StampArrival`] stamps.
#[derive(Debug, Clone)]
pub struct Stamped<S>(S);

impl<S, B> tower::Service<http::Request<B>> for Stamped<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(Arrival(Instant::now()));
        self.0.call(request)
    }
}
