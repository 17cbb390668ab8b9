//! The gateway's error: what the domain refused, what Kafka said, or the client's
//! deadline passing. `transport::status` turns it into a gRPC status, in one place.

use crate::{domain::ValidationError, kafka};
use std::time::Duration;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is invalid.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Kafka failed or refused the operation.
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    /// The client's deadline passed first.
    #[error("the client's deadline ({0:?}) passed before {1}")]
    DeadlineExceeded(Duration, &'static str),
}
