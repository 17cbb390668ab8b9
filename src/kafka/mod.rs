//! Kafka access: the shared producer, the consumer manager and the lookups they
//! need. Nothing outside this module touches rdkafka.

mod client_config;
pub mod consumer;
mod error;
mod metadata;
mod producer;

pub use client_config::KafkaSettings;
pub use consumer::{ConsumerManager, Subscription};
pub use error::Error;
pub use producer::{AckCollector, Outcome, ProducerManager};

use crate::domain::RecordTimestamp;

fn record_timestamp(timestamp: rdkafka::Timestamp) -> RecordTimestamp {
    match timestamp {
        rdkafka::Timestamp::NotAvailable => RecordTimestamp::NotAvailable,
        rdkafka::Timestamp::CreateTime(ms) => RecordTimestamp::CreateTime(ms),
        rdkafka::Timestamp::LogAppendTime(ms) => RecordTimestamp::LogAppendTime(ms),
    }
}
