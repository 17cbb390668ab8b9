//! What the gateway works with, free of gRPC and Kafka client types: validated topic
//! names, records going in and out, and what a subscription asks for. Everything
//! here is checked on construction, so the Kafka layer receives only valid input.

mod error;
mod group;
mod position;
mod record;
mod subscription;
mod topic;

pub use error::{prefix, Excerpt, ValidationError};
pub use group::GroupId;
pub use position::{Position, TopicPartition};
pub use record::{ConsumedRecord, Header, OutgoingRecord, Placement, RecordTimestamp};
pub use subscription::{
    AckMode, GroupStart, PartitionStart, SubscriptionEvent, SubscriptionSpec, MAX_PARTITIONS,
    MAX_TOPICS,
};
pub use topic::TopicName;
