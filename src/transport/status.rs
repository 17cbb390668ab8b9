//! The one mapping from gateway errors to gRPC status codes.

use crate::{error::Error, kafka};
use tonic::{Code, Status};

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let message = err.to_string();
        let code = match &err {
            Error::Invalid(_) => Code::InvalidArgument,
            Error::DeadlineExceeded(..) => Code::DeadlineExceeded,
            Error::Kafka(kafka) => kafka_code(kafka),
        };
        Status::new(code, message)
    }
}

impl From<kafka::Error> for Status {
    fn from(err: kafka::Error) -> Status {
        Status::from(Error::Kafka(err))
    }
}

/// The status for a streamed request tonic could not decode: the client's fault,
/// so INVALID_ARGUMENT for a malformed message (tonic says INTERNAL) and
/// RESOURCE_EXHAUSTED for one over the size limit (tonic says OUT_OF_RANGE);
/// anything else (a cancelled or reset stream) as tonic reported it.
pub fn undecodable(status: Status) -> Status {
    match status.code() {
        Code::Internal => Status::invalid_argument(format!(
            "the request could not be decoded: {}",
            status.message()
        )),
        Code::OutOfRange => Status::resource_exhausted(status.message().to_string()),
        _ => status,
    }
}

fn kafka_code(err: &kafka::Error) -> Code {
    use kafka::Error as K;
    match err {
        K::TopicNotFound { .. } | K::PartitionNotFound { .. } => Code::NotFound,
        K::OffsetOutOfRange { .. } => Code::OutOfRange,
        K::Unavailable(_) | K::ShuttingDown => Code::Unavailable,
        K::QueueFull(_) | K::Overloaded(_) => Code::ResourceExhausted,
        K::PositionLost(_) => Code::OutOfRange,
        K::MembershipLost(_) => Code::Aborted,
        K::Refused(_) | K::AckRefused(_) => Code::FailedPrecondition,
        K::UnknownSubscription(_) => Code::NotFound,
        K::UnknownRecord(_) => Code::InvalidArgument,
        // It depends on how many partitions the topics have now.
        K::TooManyPartitions { .. } => Code::FailedPrecondition,
        K::RecordRejected(_) => Code::InvalidArgument,
        K::NotAuthorized(_) => Code::PermissionDenied,
        K::Record { source, .. } => kafka_code(source),
        K::Client(_) | K::Other(_) => Code::Internal,
    }
}
