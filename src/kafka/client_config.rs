//! librdkafka settings for every client the gateway creates, in one place, so the
//! producer, consumers and metadata lookups agree on brokers, security and limits.

use crate::config::Config;
use rdkafka::ClientConfig;
use std::time::Duration;

/// The Kafka part of the gateway's configuration.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// `client.id`.
    pub client_id: String,
    /// Producer acks (`all`, `1`, `0`).
    pub acks: &'static str,
    /// Idempotent producer.
    pub idempotence: bool,
    /// `linger.ms`.
    pub linger: Duration,
    /// librdkafka partitioner name.
    pub partitioner: &'static str,
    /// `message.timeout.ms`.
    pub delivery_timeout: Duration,
    /// Bound on metadata and offset lookups.
    pub broker_timeout: Duration,
    /// Largest record, in bytes.
    pub max_message_bytes: usize,
    /// `queue.buffering.max.messages`.
    pub producer_queue_messages: usize,
    /// `queue.buffering.max.kbytes`, in bytes.
    pub producer_queue_bytes: usize,
    /// Offsets commit interval for group subscriptions.
    pub commit_interval: Duration,
    /// Records buffered per Subscribe stream.
    pub subscribe_buffer: usize,
    /// Subscriptions (consumers) one gateway runs at once.
    pub max_subscriptions: usize,
    /// Share one consumer among streams of the same partitions.
    pub fanout: bool,
    /// Bytes each shared partition feed keeps for slow streams.
    pub fanout_buffer_bytes: usize,
    /// Streams on shared feeds one gateway serves at once.
    pub max_shared_streams: usize,
    /// Partitions with a shared feed at once.
    pub max_shared_partitions: usize,
    /// User properties, applied last.
    pub overrides: Vec<(String, String)>,
}

impl KafkaSettings {
    /// Takes the Kafka settings from the gateway configuration; `brokers` is the
    /// resolved bootstrap list (the embedded broker's when there is one).
    pub fn new(config: &Config, brokers: String) -> KafkaSettings {
        KafkaSettings {
            brokers,
            client_id: config.client_id.clone(),
            acks: config.acks.as_kafka(),
            idempotence: config.idempotence,
            linger: config.linger,
            partitioner: config.partitioner.as_kafka(),
            delivery_timeout: config.delivery_timeout,
            broker_timeout: config.broker_timeout,
            max_message_bytes: config.max_message_bytes,
            producer_queue_messages: config.producer_queue_messages,
            producer_queue_bytes: config.producer_queue_bytes,
            commit_interval: config.commit_interval,
            subscribe_buffer: config.subscribe_buffer,
            max_subscriptions: config.max_subscriptions,
            fanout: config.fanout,
            fanout_buffer_bytes: config.fanout_buffer_bytes,
            max_shared_streams: config.max_shared_streams,
            max_shared_partitions: config.max_shared_partitions,
            overrides: config.kafka_config.clone(),
        }
    }

    /// Settings of the one shared producer.
    pub fn producer(&self) -> ClientConfig {
        let mut config = self.common();
        config
            .set("acks", self.acks)
            .set("enable.idempotence", self.idempotence.to_string())
            .set("linger.ms", self.linger.as_millis().to_string())
            .set("partitioner", self.partitioner)
            .set("message.timeout.ms", millis(self.delivery_timeout))
            .set(
                "queue.buffering.max.messages",
                self.producer_queue_messages.to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                self.producer_queue_bytes.div_ceil(1024).to_string(),
            )
            // Room for the largest record plus its batch and header overhead.
            .set(
                "message.max.bytes",
                (self.max_message_bytes + 64 * 1024).to_string(),
            );
        self.apply_overrides(&mut config);
        config
    }

    /// Settings of the consumer behind shared feeds. Each of its partitions has its
    /// own queue, and librdkafka's read-ahead bound then applies per partition: it
    /// is held to half a feed's budget (librdkafka may exceed it by one fetch).
    pub fn feed_consumer(&self) -> ClientConfig {
        let read_ahead_kib = (self.fanout_buffer_bytes / 2048).max(1);
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
                (self.max_message_bytes + 64 * 1024).to_string(),
            )
            // Bounds how long closing a consumer can wait on an unreachable group
            // coordinator (librdkafka's close gives up after the session timeout).
            // Kafka's default is 45 s; 10 s also moves a dead member's partitions sooner.
            .set("session.timeout.ms", "10000");
        // librdkafka's assign() needs a group.id even without a group; a partition
        // reader never joins it (no subscribe) and never commits to it.
        let reader_group = format!("{}-partition-reader", self.client_id);
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
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            // KIP-714 metrics push adds up to a second to every client's destroy.
            .set("enable.metrics.push", "false");
        config
    }

    fn apply_overrides(&self, config: &mut ClientConfig) {
        for (key, value) in &self.overrides {
            config.set(key, value);
        }
    }
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}
