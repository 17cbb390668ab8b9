//! Refuses requests that are not gRPC before any service decodes them: a method
//! other than POST gets HTTP 405, a content-type other than `application/grpc...`
//! HTTP 415, as the gRPC HTTP/2 protocol asks. Without this, a `text/plain` or
//! `GET` request with a gRPC-framed body was processed and its records written.

use futures::future::{self, Either, Ready};
use std::task::{Context, Poll};
use tonic::{
    body::Body,
    codegen::http::{self, header, Method, StatusCode},
};

/// Layer that lets only gRPC requests through.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcOnly;

impl<S> tower::Layer<S> for GrpcOnly {
    type Service = GrpcOnlyService<S>;

    fn layer(&self, inner: S) -> GrpcOnlyService<S> {
        GrpcOnlyService(inner)
    }
}

/// A service that answers non-gRPC requests itself.
#[derive(Debug, Clone)]
pub struct GrpcOnlyService<S>(S);

impl<S, B> tower::Service<http::Request<B>> for GrpcOnlyService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<http::Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match refusal(&request) {
            Some(response) => Either::Left(future::ready(Ok(response))),
            None => Either::Right(self.0.call(request)),
        }
    }
}

/// The answer to a request that is not gRPC, or `None` for one that is.
fn refusal<B>(request: &http::Request<B>) -> Option<http::Response<Body>> {
    if request.method() != Method::POST {
        return Some(answer(StatusCode::METHOD_NOT_ALLOWED, |r| {
            r.header(header::ALLOW, "POST")
        }));
    }
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_grpc_content_type);
    (!grpc).then(|| {
        answer(StatusCode::UNSUPPORTED_MEDIA_TYPE, |r| {
            r.header(header::ACCEPT, "application/grpc")
        })
    })
}

/// `application/grpc`, alone or with a subtype (`+proto`) or parameters.
fn is_grpc_content_type(value: &str) -> bool {
    let value = value.trim_start();
    value
        .get(.."application/grpc".len())
        .is_some_and(|head| head.eq_ignore_ascii_case("application/grpc"))
        && matches!(
            value.as_bytes().get("application/grpc".len()),
            None | Some(b'+' | b';' | b' ')
        )
}

fn answer(
    status: StatusCode,
    headers: impl FnOnce(http::response::Builder) -> http::response::Builder,
) -> http::Response<Body> {
    headers(http::Response::builder().status(status))
        .body(Body::empty())
        .expect("a status and static headers make a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types_and_only_those() {
        for ok in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc; charset=utf-8",
            "Application/GRPC",
        ] {
            assert!(is_grpc_content_type(ok), "{ok}");
        }
        for refused in [
            "",
            "text/plain",
            "application/json",
            "application/grpc-web",
            "application/grpcx",
            "application/grp",
        ] {
            assert!(!is_grpc_content_type(refused), "{refused}");
        }
    }
}
