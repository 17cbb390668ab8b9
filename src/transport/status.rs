//! The one mapping from the gateway's errors to gRPC: every error status, every
//! PublishStream `PublishError` and every Consume `AckRejected` is made here.
//!
//! A status carries, in `grpc-status-details-bin`, a `google.rpc.Status` with an
//! `ErrorInfo` (the stable reason of `ErrorReason`, domain `kafka-gateway`, and
//! metadata a program needs), a `RetryInfo` where retrying helps, a `BadRequest`
//! for invalid input and, for a failed batch, a `PublishFailure`.

use super::{convert, proto, proto::ErrorReason};
use crate::{domain::ValidationError, error::BatchFailure, kafka, Error};
use prost::Message;
use std::{collections::HashMap, time::Duration};
use tonic::{Code, Status};
use tonic_types::pb;

/// The `domain` of every `ErrorInfo` the gateway sends.
pub const DOMAIN: &str = "kafka-gateway";

/// The type URL of [`proto::PublishFailure`] in a status's details.
pub const PUBLISH_FAILURE_TYPE_URL: &str = "type.googleapis.com/kafka_gateway.v1.PublishFailure";

/// How long a client should wait before retrying after a full producer queue: it
/// drains at the broker's pace, in milliseconds.
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(100);

/// How long to wait before retrying an unreachable broker, a busy instance or one
/// shutting down (another instance or a reconnect takes about that long).
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);

/// A `PublishFailure` is cut to about this many bytes, so that with the rest of
/// the trailers (base64 adds a third) it stays under the 8 KiB that gRPC's Java
/// and C-based clients accept by default.
const PUBLISH_FAILURE_BUDGET: usize = 4096;

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        status(&err)
    }
}

impl From<kafka::Error> for Status {
    fn from(err: kafka::Error) -> Status {
        status(&Error::Kafka(err))
    }
}

impl From<ValidationError> for Status {
    fn from(err: ValidationError) -> Status {
        status(&Error::Invalid(err))
    }
}

/// The status for a streamed request tonic could not read: the client's fault,
/// so REQUEST_TOO_LARGE (RESOURCE_EXHAUSTED) for one over the size limit, where
/// tonic says OUT_OF_RANGE, and UNDECODABLE_REQUEST (INVALID_ARGUMENT) where it
/// says INTERNAL (malformed messages come from `codec` that way already); anything
/// else (a cancelled or reset stream) as tonic reported it.
pub fn undecodable(status: Status) -> Status {
    match status.code() {
        Code::Internal => Error::Undecodable(status.message().to_string()).into(),
        Code::OutOfRange => Error::RequestTooLarge(status.message().to_string()).into(),
        _ => status,
    }
}

/// The answer to a PublishStream record that failed.
pub fn publish_error(err: &Error) -> proto::PublishError {
    let described = describe(err);
    proto::PublishError {
        code: described.code as i32,
        message: err.to_string(),
        reason: described.reason as i32,
    }
}

/// The event for a Consume ack that was refused.
pub fn ack_rejected(err: &Error) -> proto::AckRejected {
    let described = describe(err);
    proto::AckRejected {
        code: described.code as i32,
        message: err.to_string(),
        reason: described.reason as i32,
    }
}

fn status(err: &Error) -> Status {
    let described = describe(err);
    let message = err.to_string();
    let mut details = vec![any(
        tonic_types::ErrorInfo::TYPE_URL,
        &pb::ErrorInfo {
            reason: described.reason.as_str_name().to_string(),
            domain: DOMAIN.to_string(),
            metadata: described
                .metadata
                .into_iter()
                .map(|(key, value)| (key.to_string(), value))
                .collect::<HashMap<_, _>>(),
        },
    )];
    if let Some(delay) = described.retry_after {
        details.push(any(
            tonic_types::RetryInfo::TYPE_URL,
            &pb::RetryInfo {
                retry_delay: Some(prost_types::Duration {
                    seconds: delay.as_secs() as i64,
                    nanos: delay.subsec_nanos() as i32,
                }),
            },
        ));
    }
    if let Some((field, description)) = described.violation {
        details.push(any(
            tonic_types::BadRequest::TYPE_URL,
            &pb::BadRequest {
                field_violations: vec![pb::bad_request::FieldViolation {
                    field,
                    description,
                    ..Default::default()
                }],
            },
        ));
    }
    if let Error::Batch(batch) = err {
        details.push(any(PUBLISH_FAILURE_TYPE_URL, &publish_failure(batch)));
    }
    let code = described.code;
    let body = pb::Status {
        code: code as i32,
        message: message.clone(),
        details,
    };
    Status::with_details(code, message, body.encode_to_vec().into())
}

fn any(type_url: &str, message: &impl Message) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url.to_string(),
        value: message.encode_to_vec(),
    }
}

/// Which records of a failed batch failed and which were written, in request
/// order, cut to [`PUBLISH_FAILURE_BUDGET`]; the counts say how many in all.
fn publish_failure(batch: &BatchFailure) -> proto::PublishFailure {
    let mut failure = proto::PublishFailure {
        failed_count: batch.failed.len() as i32,
        written_count: batch.written.len() as i32,
        ..Default::default()
    };
    let mut room = PUBLISH_FAILURE_BUDGET;
    let mut fits = |len: usize| {
        // A repeated field's entry: its tag, its length, its bytes.
        let taken = len + 1 + prost::length_delimiter_len(len);
        let fit = taken <= room;
        if fit {
            room -= taken;
        }
        fit
    };
    // Failures first: they are what a client retries.
    for (index, err) in &batch.failed {
        let record = proto::FailedRecord {
            index: *index as i32,
            reason: describe(err).reason as i32,
            message: err.to_string(),
        };
        if !fits(record.encoded_len()) {
            break;
        }
        failure.failed.push(record);
    }
    for (index, placement) in &batch.written {
        let result = convert::record_result(*placement);
        let record = proto::WrittenRecord {
            index: *index as i32,
            partition: result.partition,
            offset: result.offset,
            timestamp: result.timestamp,
        };
        if !fits(record.encoded_len()) {
            break;
        }
        failure.written.push(record);
    }
    failure
}

/// What a client needs to know of an error, besides its message.
struct Described {
    code: Code,
    reason: ErrorReason,
    metadata: Vec<(&'static str, String)>,
    retry_after: Option<Duration>,
    /// The field at fault and what is wrong with it, for invalid input.
    violation: Option<(String, String)>,
}

impl Described {
    fn new(code: Code, reason: ErrorReason) -> Described {
        Described {
            code,
            reason,
            metadata: Vec::new(),
            retry_after: None,
            violation: None,
        }
    }

    fn with(mut self, key: &'static str, value: impl ToString) -> Described {
        self.metadata.push((key, value.to_string()));
        self
    }

    fn retry_after(mut self, delay: Duration) -> Described {
        self.retry_after = Some(delay);
        self
    }
}

fn describe(err: &Error) -> Described {
    use ErrorReason as R;
    match err {
        Error::Invalid(invalid) => describe_invalid(invalid),
        Error::Kafka(kafka) => describe_kafka(kafka),
        Error::DeadlineExceeded(..) => Described::new(Code::DeadlineExceeded, R::DeadlineExceeded),
        Error::ShuttingDown => {
            Described::new(Code::Unavailable, R::ShuttingDown).retry_after(UNAVAILABLE_RETRY)
        }
        Error::Overloaded { limit, .. } => Described::new(Code::ResourceExhausted, R::Overloaded)
            .with("limit", limit)
            .retry_after(UNAVAILABLE_RETRY),
        Error::FellBehind {
            topic,
            partition,
            resume_offset,
        } => Described::new(Code::ResourceExhausted, R::FellBehind)
            .with("topic", topic)
            .with("partition", partition)
            .with("resume_offset", resume_offset),
        Error::UnknownSubscription(_) => Described::new(Code::NotFound, R::UnknownSubscription),
        Error::AcksNotEnabled => Described::new(Code::FailedPrecondition, R::AcksNotEnabled),
        Error::PartitionRevoked { topic, partition } => {
            Described::new(Code::FailedPrecondition, R::PartitionRevoked)
                .with("topic", topic)
                .with("partition", partition)
        }
        Error::RecordNotDelivered {
            topic,
            partition,
            offset,
            ..
        } => Described::new(Code::InvalidArgument, R::RecordNotDelivered)
            .with("topic", topic)
            .with("partition", partition)
            .with("offset", offset),
        // It depends on how many partitions the topics have now.
        Error::TooManyPartitions { limit } => {
            Described::new(Code::FailedPrecondition, R::TooManyPartitions).with("limit", limit)
        }
        Error::GroupNotEmpty { group, .. } => {
            Described::new(Code::FailedPrecondition, R::GroupNotEmpty).with("group", group)
        }
        // The batch answers as its first failed record would alone.
        Error::Batch(batch) => {
            let (index, first) = &batch.failed[0];
            let mut described = describe(first);
            described.metadata.retain(|(key, _)| *key != "index");
            described.with("index", index)
        }
        Error::Undecodable(_) => Described::new(Code::InvalidArgument, R::UndecodableRequest),
        Error::RequestTooLarge(_) => Described::new(Code::ResourceExhausted, R::RequestTooLarge),
    }
}

fn describe_invalid(err: &ValidationError) -> Described {
    use ErrorReason as R;
    use ValidationError as V;
    let described = match err {
        V::TopicName { .. } => Described::new(Code::InvalidArgument, R::InvalidTopicName),
        V::NoRecords => Described::new(Code::InvalidArgument, R::NoRecords),
        V::EmptyRecord { index } => {
            Described::new(Code::InvalidArgument, R::EmptyRecord).with("index", index)
        }
        V::RecordTooLarge { index, limit, .. } => {
            Described::new(Code::InvalidArgument, R::RecordTooLarge)
                .with("index", index)
                .with("limit", limit)
        }
        V::NegativePartition { partition, .. } => {
            Described::new(Code::InvalidArgument, R::InvalidPartition).with("partition", partition)
        }
        V::BadTimestamp { .. } => Described::new(Code::InvalidArgument, R::InvalidTimestamp),
        V::Field { .. } => Described::new(Code::InvalidArgument, R::InvalidField),
        V::Missing { .. } => Described::new(Code::InvalidArgument, R::MissingField),
        V::CorrelationIdTooLong { index, limit, .. } => {
            Described::new(Code::InvalidArgument, R::CorrelationIdTooLong)
                .with("index", index)
                .with("limit", limit)
        }
        V::TooMany { limit, .. } => {
            Described::new(Code::InvalidArgument, R::TooManyEntries).with("limit", limit)
        }
    };
    let field = err.field();
    let mut described = described.with("field", &field);
    described.violation = Some((field, err.to_string()));
    described
}

fn describe_kafka(err: &kafka::Error) -> Described {
    use kafka::Error as K;
    use ErrorReason as R;
    match err {
        K::TopicNotFound { topic } => {
            Described::new(Code::NotFound, R::TopicNotFound).with("topic", topic)
        }
        K::PartitionNotFound {
            topic,
            partition,
            count,
        } => Described::new(Code::NotFound, R::PartitionNotFound)
            .with("topic", topic)
            .with("partition", partition)
            .with("partition_count", count),
        K::OffsetOutOfRange {
            topic,
            partition,
            offset,
            low,
            high,
        } => Described::new(Code::OutOfRange, R::OffsetOutOfRange)
            .with("topic", topic)
            .with("partition", partition)
            .with("offset", offset)
            .with("earliest_offset", low)
            .with("end_offset", high),
        K::Unavailable(_) => {
            Described::new(Code::Unavailable, R::BrokerUnavailable).retry_after(UNAVAILABLE_RETRY)
        }
        K::PositionLost(_) => Described::new(Code::OutOfRange, R::PositionLost),
        K::MembershipLost(_) => Described::new(Code::Aborted, R::MembershipLost),
        K::Refused(_) => Described::new(Code::FailedPrecondition, R::KafkaRefused),
        K::QueueFull(_) => {
            Described::new(Code::ResourceExhausted, R::QueueFull).retry_after(QUEUE_FULL_RETRY)
        }
        K::RecordRejected(_) => Described::new(Code::InvalidArgument, R::RecordRejected),
        K::NotAuthorized(_) => Described::new(Code::PermissionDenied, R::KafkaAuthorizationFailed),
        // The client closed under the request: the gateway is shutting down.
        K::Canceled => {
            Described::new(Code::Unavailable, R::ShuttingDown).retry_after(UNAVAILABLE_RETRY)
        }
        K::Client(_) => Described::new(Code::Internal, R::KafkaClientError),
        K::Other(_) => Described::new(Code::Internal, R::KafkaError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Placement, RecordTimestamp};
    use tonic_types::StatusExt;

    fn kafka(err: kafka::Error) -> Error {
        Error::Kafka(err)
    }

    /// Every error, including those no integration test can provoke (a broker
    /// refusing access, a lost position), has its code and reason.
    #[test]
    fn every_error_has_its_code_and_reason() {
        use kafka::Error as K;
        let text = || "why".to_string();
        let cases = [
            (
                Error::DeadlineExceeded(Duration::from_secs(1), "x"),
                Code::DeadlineExceeded,
                "DEADLINE_EXCEEDED",
            ),
            (Error::ShuttingDown, Code::Unavailable, "SHUTTING_DOWN"),
            (
                Error::Overloaded {
                    message: text(),
                    limit: 3,
                },
                Code::ResourceExhausted,
                "OVERLOADED",
            ),
            (
                Error::FellBehind {
                    topic: "t".into(),
                    partition: 1,
                    resume_offset: 9,
                },
                Code::ResourceExhausted,
                "FELL_BEHIND",
            ),
            (
                Error::UnknownSubscription(text()),
                Code::NotFound,
                "UNKNOWN_SUBSCRIPTION",
            ),
            (
                Error::AcksNotEnabled,
                Code::FailedPrecondition,
                "ACKS_NOT_ENABLED",
            ),
            (
                Error::PartitionRevoked {
                    topic: "t".into(),
                    partition: 1,
                },
                Code::FailedPrecondition,
                "PARTITION_REVOKED",
            ),
            (
                Error::RecordNotDelivered {
                    topic: "t".into(),
                    partition: 1,
                    offset: 2,
                    never_read: true,
                },
                Code::InvalidArgument,
                "RECORD_NOT_DELIVERED",
            ),
            (
                Error::TooManyPartitions { limit: 10 },
                Code::FailedPrecondition,
                "TOO_MANY_PARTITIONS",
            ),
            (
                Error::GroupNotEmpty {
                    group: "g".into(),
                    members: text(),
                },
                Code::FailedPrecondition,
                "GROUP_NOT_EMPTY",
            ),
            (
                Error::Undecodable(text()),
                Code::InvalidArgument,
                "UNDECODABLE_REQUEST",
            ),
            (
                Error::RequestTooLarge(text()),
                Code::ResourceExhausted,
                "REQUEST_TOO_LARGE",
            ),
            (
                kafka(K::TopicNotFound { topic: "t".into() }),
                Code::NotFound,
                "TOPIC_NOT_FOUND",
            ),
            (
                kafka(K::PartitionNotFound {
                    topic: "t".into(),
                    partition: 5,
                    count: 2,
                }),
                Code::NotFound,
                "PARTITION_NOT_FOUND",
            ),
            (
                kafka(K::OffsetOutOfRange {
                    topic: "t".into(),
                    partition: 0,
                    offset: 9,
                    low: 0,
                    high: 2,
                }),
                Code::OutOfRange,
                "OFFSET_OUT_OF_RANGE",
            ),
            (
                kafka(K::Unavailable(text())),
                Code::Unavailable,
                "BROKER_UNAVAILABLE",
            ),
            (
                kafka(K::PositionLost(text())),
                Code::OutOfRange,
                "POSITION_LOST",
            ),
            (
                kafka(K::MembershipLost(text())),
                Code::Aborted,
                "MEMBERSHIP_LOST",
            ),
            (
                kafka(K::Refused(text())),
                Code::FailedPrecondition,
                "KAFKA_REFUSED",
            ),
            (
                kafka(K::QueueFull(text())),
                Code::ResourceExhausted,
                "QUEUE_FULL",
            ),
            (
                kafka(K::RecordRejected(text())),
                Code::InvalidArgument,
                "RECORD_REJECTED",
            ),
            (
                kafka(K::NotAuthorized(text())),
                Code::PermissionDenied,
                "KAFKA_AUTHORIZATION_FAILED",
            ),
            (kafka(K::Canceled), Code::Unavailable, "SHUTTING_DOWN"),
            (
                kafka(K::Client(text())),
                Code::Internal,
                "KAFKA_CLIENT_ERROR",
            ),
            (kafka(K::Other(text())), Code::Internal, "KAFKA_ERROR"),
        ];
        for (err, code, reason) in cases {
            let published = publish_error(&err);
            let status = Status::from(err);
            assert_eq!(status.code(), code, "{status:?}");
            let details = status.get_error_details();
            let info = details.error_info().expect("ErrorInfo");
            assert_eq!(
                (info.reason.as_str(), info.domain.as_str()),
                (reason, DOMAIN)
            );
            assert_eq!(published.code, code as i32);
            assert_eq!(
                ErrorReason::try_from(published.reason)
                    .unwrap()
                    .as_str_name(),
                reason
            );
            let retry = matches!(
                reason,
                "SHUTTING_DOWN" | "OVERLOADED" | "BROKER_UNAVAILABLE" | "QUEUE_FULL"
            );
            assert_eq!(details.retry_info().is_some(), retry, "{reason}");
        }
    }

    #[test]
    fn a_huge_failed_batch_is_listed_within_the_budget_and_counted_in_full() {
        let placement = Placement {
            partition: 3,
            offset: 1 << 40,
            timestamp: RecordTimestamp::CreateTime(1_700_000_000_000),
        };
        let batch = BatchFailure {
            count: 20_000,
            failed: (0..10_000)
                .map(|i| {
                    (
                        2 * i,
                        kafka(kafka::Error::Unavailable("the broker is down".into())),
                    )
                })
                .collect(),
            written: (0..10_000).map(|i| (2 * i + 1, placement)).collect(),
        };
        let failure = publish_failure(&batch);
        assert!(
            failure.encoded_len() <= PUBLISH_FAILURE_BUDGET + 16,
            "{}",
            failure.encoded_len()
        );
        assert_eq!(
            (failure.failed_count, failure.written_count),
            (10_000, 10_000)
        );
        assert!(!failure.failed.is_empty());
        assert_eq!(failure.failed[1].index, 2);
        // The whole status, base64-encoded in the trailers, stays under 8 KiB.
        let status = Status::from(Error::Batch(Box::new(batch)));
        assert!(status.details().len() * 4 / 3 + status.message().len() < 8 * 1024);
    }
}
