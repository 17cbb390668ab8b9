//! How Subscribe streams read: commits, read-ahead and how many consumers run.

use clap::Args;
use std::time::Duration;

/// Settings of the Kafka consumers behind Subscribe streams.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Subscribing")]
pub struct ConsumerConfig {
    /// How often a consumer group subscription commits the offsets of records it
    /// handed to its stream (they are also committed when the stream ends).
    #[arg(long, env = "KAFKA_GATEWAY_COMMIT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub commit_interval: Duration,

    /// Records read ahead for one Subscribe stream while its client is busy: about
    /// this many times 4 KiB (1 MiB by default), or two of the largest records if
    /// that is more.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_SUBSCRIBE_BUFFER",
        default_value_t = 256,
        value_name = "COUNT"
    )]
    pub subscribe_buffer: usize,

    /// Subscribe streams with a Kafka consumer of their own that one gateway serves
    /// at once; more get RESOURCE_EXHAUSTED. Group subscriptions have their own
    /// consumer, as do those without a group that cannot share a live feed. Each
    /// costs a few threads and up to 8 MiB of Kafka read-ahead besides
    /// `--subscribe-buffer`.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_MAX_SUBSCRIPTIONS",
        default_value_t = 1000,
        value_name = "COUNT"
    )]
    pub max_subscriptions: usize,

    /// Of `--max-subscriptions`, how many one client connection may hold, so that
    /// one client cannot take them all; more get RESOURCE_EXHAUSTED. Streams on
    /// shared feeds do not count.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        default_value_t = 100,
        value_name = "COUNT"
    )]
    pub max_subscriptions_per_connection: usize,
}

impl ConsumerConfig {
    /// Adds a line to `problems` for every setting that cannot be used.
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        super::check_at_least_one(
            problems,
            [
                ("--subscribe-buffer", self.subscribe_buffer),
                ("--max-subscriptions", self.max_subscriptions),
                (
                    "--max-subscriptions-per-connection",
                    self.max_subscriptions_per_connection,
                ),
            ],
        );
        super::check_positive(problems, [("--commit-interval", self.commit_interval)]);
    }
}
