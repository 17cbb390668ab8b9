/// A request the gateway will not send to Kafka. Each message names the offending
/// field and says how to fix it; every variant becomes INVALID_ARGUMENT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A topic name Kafka would reject.
    #[error("invalid topic name {name:?}: {reason}")]
    TopicName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A Publish with no records.
    #[error("records is empty: a Publish needs at least one record")]
    NoRecords,
    /// A record with neither key nor value carries nothing.
    #[error("record {index} has neither key nor value: set at least one")]
    EmptyRecord {
        /// Position of the record in the request.
        index: usize,
    },
    /// A record over the configured size limit.
    #[error("record {index} is {size} bytes (key, value and headers), over the limit of {limit} bytes: split it or raise --max-message-bytes")]
    RecordTooLarge {
        /// Position of the record in the request.
        index: usize,
        /// Its size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A partition number below zero.
    #[error("{field} {partition} is negative: partitions are numbered from 0")]
    NegativePartition {
        /// Which field held it.
        field: String,
        /// The number given.
        partition: i32,
    },
    /// A timestamp that does not fit Kafka's milliseconds since the epoch.
    #[error("{field} is out of range: Kafka timestamps are milliseconds from 1970 on")]
    BadTimestamp {
        /// Which field held it.
        field: String,
    },
    /// A Subscribe whose fields do not fit together.
    #[error("{0}")]
    Subscription(String),
}
