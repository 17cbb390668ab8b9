//! Fan-out: one Kafka consumer shared by the streams without a group that read
//! the same partitions.

use clap::Args;

/// Settings of the shared partition feeds.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Fan-out")]
pub struct FanoutConfig {
    /// Share one Kafka consumer among Subscribe streams without a group that read
    /// the same partitions: each stream then costs a cursor, not a consumer. Off
    /// gives every stream its own consumer.
    #[arg(long = "fanout", env = "KAFKA_GATEWAY_FANOUT", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub enabled: bool,

    /// Bytes of records each shared partition keeps for streams behind the newest
    /// record. A stream that falls further behind ends with RESOURCE_EXHAUSTED
    /// (reason FELL_BEHIND) instead of slowing the others.
    #[arg(long, env = "KAFKA_GATEWAY_FANOUT_BUFFER_BYTES", default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    pub fanout_buffer_bytes: usize,

    /// Subscribe streams reading shared feeds that one gateway serves at once; more
    /// get RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_MAX_SHARED_STREAMS",
        default_value_t = 100_000,
        value_name = "COUNT"
    )]
    pub max_shared_streams: usize,

    /// Partitions shared at once. Each holds up to `--fanout-buffer-bytes`, and half
    /// as much again of Kafka read-ahead; a stream that would need one more reads
    /// with a consumer of its own.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_MAX_SHARED_PARTITIONS",
        default_value_t = 256,
        value_name = "COUNT"
    )]
    pub max_shared_partitions: usize,
}

impl FanoutConfig {
    /// Adds a line to `problems` for every setting that cannot be used.
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        super::check_at_least_one(
            problems,
            [
                ("--fanout-buffer-bytes", self.fanout_buffer_bytes),
                ("--max-shared-streams", self.max_shared_streams),
                ("--max-shared-partitions", self.max_shared_partitions),
            ],
        );
    }
}
