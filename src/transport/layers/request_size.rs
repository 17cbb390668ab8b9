//! A unary request over `--max-request-bytes` is the client's too-large request
//! (RESOURCE_EXHAUSTED `REQUEST_TOO_LARGE`, as gRPC implementations answer), not
//! tonic's OUT_OF_RANGE, which this API uses for offsets.
//!
//! tonic checks the announced length before any of the gateway's code runs and
//! answers a unary call itself, in the response headers; streamed calls see the
//! error in their own loop, where [`status::undecodable`] maps it. This layer gives
//! the unary answer the same mapping.

use crate::transport::status;
use futures::{future::MapOk, TryFutureExt};
use std::task::{Context, Poll};
use tonic::{body::Body, codegen::http, Code, Status};

/// The start of tonic's message for a request over the size limit.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large";

/// Layer that maps tonic's answer to an oversized unary request.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSize;

impl<S> tower::Layer<S> for RequestSize {
    type Service = RequestSizeService<S>;

    fn layer(&self, inner: S) -> RequestSizeService<S> {
        RequestSizeService(inner)
    }
}

/// A service whose oversized-request answers [`RequestSize`] maps.
#[derive(Debug, Clone)]
pub struct RequestSizeService<S>(S);

type Answer = http::Response<Body>;

impl<S, B> tower::Service<http::Request<B>> for RequestSizeService<S>
where
    S: tower::Service<http::Request<B>, Response = Answer>,
{
    type Response = Answer;
    type Error = S::Error;
    type Future = MapOk<S::Future, fn(Answer) -> Answer>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.0.call(request).map_ok(remap as fn(Answer) -> Answer)
    }
}

fn remap(answer: Answer) -> Answer {
    match Status::from_header_map(answer.headers()) {
        Some(status)
            if status.code() == Code::OutOfRange
                && status.message().starts_with(TONIC_TOO_LARGE) =>
        {
            status::undecodable(status).into_http()
        }
        _ => answer,
    }
}
