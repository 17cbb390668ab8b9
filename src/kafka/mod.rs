//! Kafka access: the shared producer, the consumer manager and the lookups they
//! need. Nothing outside this module touches rdkafka.

mod admin;
mod client_config;
pub mod consumer;
mod error;
mod metadata;
mod partitions;
mod producer;
mod record;

pub use admin::Admin;
pub use client_config::KafkaSettings;
pub use consumer::{ConsumerManager, ConsumerShare, Subscription, SubscriptionHandle};
pub use error::Error;
pub use metadata::Lookups;
pub use producer::{AckCollector, Outcome, ProducerManager};
