//! How the gateway reaches Kafka: brokers, client id, and what every client shares.

use clap::Args;
use std::time::Duration;

/// Largest record Kafka brokers accept by default (`message.max.bytes`).
const KAFKA_DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// Settings every Kafka client of the gateway shares.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaConfig {
    /// Kafka bootstrap servers, comma-separated (`host1:9092,host2:9092`).
    #[arg(long, env = "KAFKA_GATEWAY_BROKERS", value_name = "LIST")]
    pub brokers: Option<String>,

    /// Start an in-memory demo broker inside the gateway (librdkafka's mock cluster)
    /// instead of connecting to Kafka. It is not Kafka and keeps nothing: for a first
    /// look only.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_EMBEDDED_BROKER",
        conflicts_with = "brokers"
    )]
    pub embedded_broker: bool,

    /// Kafka client id, shown in broker logs and quotas.
    #[arg(long, env = "KAFKA_GATEWAY_CLIENT_ID", default_value = "kafka-gateway")]
    pub client_id: String,

    /// How long to wait for the broker to answer a metadata or offset lookup before
    /// failing with UNAVAILABLE.
    #[arg(long, env = "KAFKA_GATEWAY_BROKER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub broker_timeout: Duration,

    /// Largest record accepted, in bytes: key, value and headers together. Keep it
    /// at most the brokers' `message.max.bytes`.
    #[arg(long, env = "KAFKA_GATEWAY_MAX_MESSAGE_BYTES", default_value_t = KAFKA_DEFAULT_MAX_MESSAGE_BYTES, value_name = "BYTES")]
    pub max_message_bytes: usize,

    /// Any librdkafka property for every Kafka client, as KEY=VALUE; repeat the flag
    /// (or separate with `;` in the environment variable). Applied last, so it
    /// overrides the gateway's own choices: e.g. `security.protocol=SASL_SSL`.
    #[arg(long = "kafka-config", env = "KAFKA_GATEWAY_KAFKA_CONFIG", hide_env_values = true, value_delimiter = ';', value_parser = parse_key_value, value_name = "KEY=VALUE")]
    pub kafka_config: Vec<(String, String)>,
}

impl KafkaConfig {
    /// Adds a line to `problems` for every setting that cannot be used.
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        match &self.brokers {
            None if !self.embedded_broker => problems.push(
                "no Kafka brokers: set --brokers host:port[,host:port] (KAFKA_GATEWAY_BROKERS), or --embedded-broker for a demo".into(),
            ),
            Some(brokers) => {
                if let Some(bad) = brokers.split(',').find(|b| b.trim().is_empty()) {
                    problems.push(format!("--brokers {brokers:?} has an empty entry {bad:?}: give host:port pairs separated by commas"));
                }
            }
            None => {}
        }
        if self.max_message_bytes == 0 {
            problems.push("--max-message-bytes must be at least 1".into());
        }
        super::check_positive(problems, [("--broker-timeout", self.broker_timeout)]);
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "expected KEY=VALUE (a librdkafka property), got {s:?}"
        )),
    }
}
