use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What went wrong talking to Kafka, in the terms a client can act on. The
/// transport layer maps each variant to one gRPC status code and reason. The
/// gateway's own states (limits, shutdown, acks) are [`crate::Error`]'s.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The topic does not exist and the broker did not create it.
    #[error("topic {topic:?} does not exist: create it first")]
    TopicNotFound {
        /// The topic named.
        topic: String,
    },
    /// The partition does not exist in the topic.
    #[error("partition {partition} does not exist in topic {topic:?}, which has {count} partitions (0 to {})", count - 1)]
    PartitionNotFound {
        /// The topic.
        topic: String,
        /// The partition named.
        partition: i32,
        /// How many partitions the topic has.
        count: i32,
    },
    /// A start offset outside what the partition holds.
    #[error("offset {offset} is outside {topic}/{partition}, which holds offsets {low} to {high} (the end offset {high} reads what is written next)")]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset asked for.
        offset: i64,
        /// Oldest offset kept.
        low: i64,
        /// Next offset to be written.
        high: i64,
    },
    /// The broker cannot be reached, or did not answer in time; retrying later may work.
    #[error("Kafka is unavailable: {0}")]
    Unavailable(String),
    /// A stream's read position is gone (retention deleted the records).
    #[error("the stream's position is no longer in the partition ({0}): retention deleted those records; subscribe again from EARLIEST or a later offset")]
    PositionLost(String),
    /// The consumer lost its group membership; subscribing again rejoins.
    #[error("the consumer group membership was lost ({0}): subscribe again")]
    MembershipLost(String),
    /// The request does not fit the group or cluster (protocol, group id).
    #[error("Kafka refused the request: {0}")]
    Refused(String),
    /// The shared producer's queue is full; retry after a short wait.
    #[error("the gateway's producer queue is full ({0}): retry after a short wait, or raise --producer-queue-messages / --producer-queue-bytes")]
    QueueFull(String),
    /// The broker refused the record itself (too large for the broker, invalid).
    #[error("the broker rejected the record: {0}")]
    RecordRejected(String),
    /// The broker refused access.
    #[error("not authorized: {0}")]
    NotAuthorized(String),
    /// The Kafka client was closed under the request: the gateway is shutting down.
    #[error("the Kafka client was closed: the gateway is shutting down")]
    Canceled,
    /// A Kafka client could not be created, usually for a bad `--kafka-config`.
    #[error("{0}")]
    Client(String),
    /// Any other Kafka error, with librdkafka's words.
    #[error("Kafka error: {0}")]
    Other(String),
}

impl Error {
    /// A client-creation failure; names the offending property when there is one.
    pub fn client(what: &str, err: KafkaError) -> Error {
        match err {
            // The value may be a password (and the key a misspelled password key):
            // it is never repeated, here or in librdkafka's own words.
            KafkaError::ClientConfig(_, description, key, value) => {
                let description = if value.is_empty() {
                    description
                } else {
                    description.replace(&value, "(value hidden)")
                };
                Error::Client(format!(
                    "invalid Kafka client setting {key}: {description} (see --kafka-config; values are not shown)"
                ))
            }
            other => Error::Client(format!("cannot create the Kafka {what}: {other}")),
        }
    }

    /// Classifies an rdkafka error by its librdkafka code. `topic` names the topic
    /// involved, where there is one, for the error message.
    pub fn from_kafka(err: &KafkaError, topic: Option<&str>) -> Error {
        let text = err.to_string();
        let Some(code) = err.rdkafka_error_code() else {
            return match err {
                KafkaError::Canceled => Error::Canceled,
                _ => Error::Other(text),
            };
        };
        use RDKafkaErrorCode as C;
        match code {
            C::QueueFull => Error::QueueFull(text),
            C::UnknownTopicOrPartition | C::UnknownTopic => match topic {
                Some(topic) => Error::TopicNotFound {
                    topic: topic.to_string(),
                },
                None => Error::Other(text),
            },
            C::MessageTimedOut
            | C::RequestTimedOut
            | C::OperationTimedOut
            | C::AllBrokersDown
            | C::BrokerTransportFailure
            | C::Resolve
            | C::NetworkException
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::NotCoordinator
            | C::CoordinatorNotAvailable
            | C::CoordinatorLoadInProgress
            | C::BrokerNotAvailable
            | C::ReplicaNotAvailable => Error::Unavailable(text),
            C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::InvalidMessage
            | C::InvalidRecord
            | C::InvalidTimestamp
            | C::PolicyViolation => Error::RecordRejected(text),
            C::AutoOffsetReset | C::OffsetOutOfRange => Error::PositionLost(text),
            C::UnknownMemberId
            | C::IllegalGeneration
            | C::RebalanceInProgress
            | C::FencedInstanceId => Error::MembershipLost(text),
            C::InvalidGroupId
            | C::InconsistentGroupProtocol
            | C::GroupMaxSizeReached
            | C::InvalidSessionTimeout => Error::Refused(text),
            C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication => Error::NotAuthorized(text),
            _ => Error::Other(text),
        }
    }
}
