//! librdkafka settings for every client the gateway creates, in one place, so the
//! producer, consumers and metadata lookups agree on brokers, security and limits.

use crate::config::{Config, ConsumerConfig, FanoutConfig, KafkaConfig, ProducerConfig};
use rdkafka::ClientConfig;
use std::time::Duration;

/// The Kafka groups of the gateway's configuration, as they are, with the
/// bootstrap list resolved (the embedded broker's when there is one).
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// What every client shares.
    pub kafka: KafkaConfig,
    /// The shared producer.
    pub producer: ProducerConfig,
    /// Consumers of Subscribe streams.
    pub consumer: ConsumerConfig,
    /// Shared partition feeds.
    pub fanout: FanoutConfig,
}

impl KafkaSettings {
    /// Takes the Kafka groups of `config`, to reach `bootstrap_servers`.
    pub fn new(config: &Config, bootstrap_servers: String) -> KafkaSettings {
        KafkaSettings {
            bootstrap_servers,
            kafka: config.kafka.clone(),
            producer: config.producer.clone(),
            consumer: config.consumer.clone(),
            fanout: config.fanout.clone(),
        }
    }

    /// Settings of the one shared producer.
    pub fn producer(&self) -> ClientConfig {
        let producer = &self.producer;
        let mut config = self.common();
        config
            .set("acks", producer.acks.as_kafka())
            .set("enable.idempotence", producer.idempotence.to_string())
            .set("linger.ms", millis(producer.linger))
            .set("partitioner", producer.partitioner.as_kafka())
            .set("message.timeout.ms", millis(producer.delivery_timeout))
            .set(
                "queue.buffering.max.messages",
                producer.producer_queue_messages.to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                producer.producer_queue_bytes.div_ceil(1024).to_string(),
            )
            // Room for the largest record plus its batch and header overhead.
            .set(
                "message.max.bytes",
                (self.kafka.max_message_bytes + 64 * 1024).to_string(),
            );
        self.apply_overrides(&mut config);
        config
    }

    /// Settings of the consumer behind shared feeds. Each of its partitions has its
    /// own queue, and librdkafka's read-ahead bound then applies per partition: it
    /// is held to half a feed's budget (librdkafka may exceed it by one fetch).
    pub fn feed_consumer(&self) -> ClientConfig {
        let read_ahead_kib = (self.fanout.fanout_buffer_bytes / 2048).max(1);
        self.consumer_reading_ahead(None, "error", read_ahead_kib)
    }

    /// Settings of a consumer: in `group` when given, else a plain partition reader.
    /// `reset` is `auto.offset.reset`.
    pub fn consumer(&self, group: Option<&str>, reset: &str) -> ClientConfig {
        // librdkafka prefetches up to 64 MiB per consumer by default; one consumer
        // per stream makes that a per-stream cost, so keep the read-ahead small.
        self.consumer_reading_ahead(group, reset, 8192)
    }

    fn consumer_reading_ahead(
        &self,
        group: Option<&str>,
        reset: &str,
        read_ahead_kib: usize,
    ) -> ClientConfig {
        let mut config = self.common();
        config
            // The gateway commits itself, only what it handed to a stream.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", reset)
            .set("queued.max.messages.kbytes", read_ahead_kib.to_string())
            .set("queued.min.messages", "10000")
            // With the read-ahead this small, one fetch can fill it, and librdkafka
            // then waits this long before fetching again (1 s by default: a stream
            // draining a backlog got one fetch's worth of records per second).
            .set("fetch.queue.backoff.ms", "10")
            .set(
                "fetch.message.max.bytes",
                (self.kafka.max_message_bytes + 64 * 1024).to_string(),
            )
            // Bounds how long closing a consumer can wait on an unreachable group
            // coordinator (librdkafka's close gives up after the session timeout).
            // Kafka's default is 45 s; 10 s also moves a dead member's partitions sooner.
            .set("session.timeout.ms", "10000");
        // librdkafka's assign() needs a group.id even without a group; a partition
        // reader never joins it (no subscribe) and never commits to it.
        let reader_group = format!("{}-partition-reader", self.kafka.client_id);
        config.set("group.id", group.unwrap_or(&reader_group));
        self.apply_overrides(&mut config);
        config
    }

    /// Settings of the client that answers metadata and offset lookups. It never
    /// creates topics: a Subscribe to a missing topic is an error, as in Kafka.
    pub fn metadata(&self) -> ClientConfig {
        let mut config = self.common();
        config.set("allow.auto.create.topics", "false");
        self.apply_overrides(&mut config);
        config
    }

    fn common(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.kafka.client_id)
            // KIP-714 metrics push adds up to a second to every client's destroy.
            .set("enable.metrics.push", "false");
        config
    }

    fn apply_overrides(&self, config: &mut ClientConfig) {
        for (key, value) in &self.kafka.kafka_config {
            config.set(key, value);
        }
    }
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}
