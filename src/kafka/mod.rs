//! Kafka access: the shared producer, the consumer manager and the lookups they
//! need. Nothing outside this module touches rdkafka.

mod client_config;
pub mod consumer;
mod error;
mod metadata;
mod producer;
mod record;

pub use client_config::KafkaSettings;
pub use consumer::{ConsumerManager, Subscription, SubscriptionHandle};
pub use error::Error;
pub use producer::{AckCollector, Outcome, ProducerManager};
