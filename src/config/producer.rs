//! How records are published: durability, batching, partitioning and limits.

use clap::{Args, ValueEnum};
use std::time::Duration;

/// Settings of the one shared producer and of PublishStream.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Publishing")]
pub struct ProducerConfig {
    /// Acknowledgements the producer waits for: all in-sync replicas, the leader, or none.
    #[arg(long, env = "KAFKA_GATEWAY_ACKS", value_enum, default_value_t = Acks::All)]
    pub acks: Acks,

    /// Idempotent producer: no duplicates or reordering from producer retries.
    /// Needs `--acks all`.
    #[arg(long, env = "KAFKA_GATEWAY_IDEMPOTENCE", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub idempotence: bool,

    /// How long the producer waits to batch records (`linger.ms`).
    #[arg(long, env = "KAFKA_GATEWAY_LINGER", default_value = "5ms", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub linger: Duration,

    /// How records without an explicit partition are spread over partitions.
    #[arg(long, env = "KAFKA_GATEWAY_PARTITIONER", value_enum, default_value_t = Partitioner::Murmur2Random)]
    pub partitioner: Partitioner,

    /// How long the broker may take to acknowledge a record before Publish fails
    /// with UNAVAILABLE (`message.timeout.ms`, retries included).
    #[arg(long, env = "KAFKA_GATEWAY_DELIVERY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub delivery_timeout: Duration,

    /// Records waiting for the broker, over all clients, before Publish fails with
    /// RESOURCE_EXHAUSTED (`queue.buffering.max.messages`).
    #[arg(
        long,
        env = "KAFKA_GATEWAY_PRODUCER_QUEUE_MESSAGES",
        default_value_t = 100_000,
        value_name = "COUNT"
    )]
    pub producer_queue_messages: usize,

    /// Bytes of records waiting for the broker, over all clients, before Publish
    /// fails with RESOURCE_EXHAUSTED (`queue.buffering.max.kbytes`, here in bytes).
    #[arg(long, env = "KAFKA_GATEWAY_PRODUCER_QUEUE_BYTES", default_value_t = 128 * 1024 * 1024, value_name = "BYTES")]
    pub producer_queue_bytes: usize,

    /// Records of one PublishStream sent and not yet answered; past this the client
    /// is held back until answers come.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_PUBLISH_STREAM_IN_FLIGHT",
        default_value_t = 1000,
        value_name = "COUNT"
    )]
    pub publish_stream_in_flight: usize,
}

impl ProducerConfig {
    /// Adds a line to `problems` for every setting that cannot be used.
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        if self.idempotence && self.acks != Acks::All {
            problems.push(format!(
                "--acks {} does not work with --idempotence true: use --acks all, or --idempotence false",
                self.acks.as_kafka()
            ));
        }
        super::check_at_least_one(
            problems,
            [
                ("--producer-queue-messages", self.producer_queue_messages),
                ("--publish-stream-in-flight", self.publish_stream_in_flight),
            ],
        );
        if self.producer_queue_bytes < 1024 {
            problems.push("--producer-queue-bytes must be at least 1024".into());
        }
        super::check_positive(problems, [("--delivery-timeout", self.delivery_timeout)]);
    }
}

/// Producer acknowledgement levels (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Acks {
    /// Every in-sync replica has the record.
    All,
    /// The partition leader has the record.
    #[value(name = "1")]
    Leader,
    /// Nothing: the record may be lost without an error.
    #[value(name = "0")]
    None,
}

impl Acks {
    /// The value librdkafka's `acks` takes.
    pub fn as_kafka(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "1",
            Acks::None => "0",
        }
    }
}

/// librdkafka partitioners; the names are librdkafka's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Partitioner {
    /// Kafka's murmur2 hash of the key (as the Java client); random without a key.
    Murmur2Random,
    /// murmur2 of the key; records without a key all go to one partition.
    Murmur2,
    /// CRC32 of the key; random without a key (librdkafka's own default).
    ConsistentRandom,
    /// CRC32 of the key; records without a key all go to one partition.
    Consistent,
    /// FNV-1a of the key (as Sarama); random without a key.
    Fnv1aRandom,
    /// Random partition for every record.
    Random,
}

impl Partitioner {
    /// The value librdkafka's `partitioner` takes.
    pub fn as_kafka(self) -> &'static str {
        match self {
            Partitioner::Murmur2Random => "murmur2_random",
            Partitioner::Murmur2 => "murmur2",
            Partitioner::ConsistentRandom => "consistent_random",
            Partitioner::Consistent => "consistent",
            Partitioner::Fnv1aRandom => "fnv1a_random",
            Partitioner::Random => "random",
        }
    }
}
