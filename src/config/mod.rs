//! Gateway configuration: typed groups read from flags, `KAFKA_GATEWAY_*`
//! environment variables and an optional TOML file ([`file`]), and validated once
//! at start-up.
//!
//! Precedence: command line, then environment, then the file, then defaults. Each
//! group goes to its user as it is: [`ServerConfig`] to the gRPC server, the Kafka
//! groups to the Kafka clients. `--help` says what each setting means for a user;
//! how a setting works is told in the docs of the module that implements it.

pub mod file;

mod consumer;
mod fanout;
mod kafka;
mod producer;
mod server;
mod tls;

pub use consumer::ConsumerConfig;
pub use fanout::FanoutConfig;
pub use kafka::KafkaConfig;
pub use producer::{Acks, Partitioner, ProducerConfig};
pub use server::ServerConfig;
pub use tls::{ClientAuth, TlsConfig};

use clap::Args;
use std::{fmt, path::PathBuf, time::Duration};

/// Everything the gateway needs to run.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// TOML file with settings; keys are the flag names (`brokers = "h1:9092"`).
    #[arg(long, env = "KAFKA_GATEWAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The gRPC server and its client connections.
    #[command(flatten)]
    pub server: ServerConfig,

    /// What every Kafka client shares.
    #[command(flatten)]
    pub kafka: KafkaConfig,

    /// Publishing.
    #[command(flatten)]
    pub producer: ProducerConfig,

    /// Subscribing.
    #[command(flatten)]
    pub consumer: ConsumerConfig,

    /// Streams without a group sharing consumers.
    #[command(flatten)]
    pub fanout: FanoutConfig,
}

impl Config {
    /// Checks what clap cannot check alone, and names every setting that cannot be
    /// used, not only the first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.server.check(&mut problems);
        self.kafka.check(&mut problems);
        self.producer.check(&mut problems);
        self.consumer.check(&mut problems);
        self.fanout.check(&mut problems);
        if self.server.max_request_bytes < self.kafka.max_message_bytes {
            problems.push(format!(
                "--max-request-bytes ({}) must be at least --max-message-bytes ({}) so a largest record fits in a request",
                self.server.max_request_bytes, self.kafka.max_message_bytes
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems))
        }
    }
}

/// A configuration that cannot be used: one line per problem, each saying what to fix.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError(Vec<String>);

impl ConfigError {
    fn one(problem: String) -> ConfigError {
        ConfigError(vec![problem])
    }

    /// One line per problem.
    pub fn problems(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

fn check_at_least_one<const N: usize>(problems: &mut Vec<String>, values: [(&str, usize); N]) {
    for (name, value) in values {
        if value == 0 {
            problems.push(format!("{name} must be at least 1"));
        }
    }
}

fn check_positive<const N: usize>(problems: &mut Vec<String>, values: [(&str, Duration); N]) {
    for (name, value) in values {
        if value.is_zero() {
            problems.push(format!("{name} must be longer than zero"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

    fn parse(args: &[&str]) -> Config {
        let command = Config::augment_args(clap::Command::new("serve"));
        let matches = command
            .try_get_matches_from(std::iter::once("serve").chain(args.iter().copied()))
            .unwrap();
        Config::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn defaults_are_kafka_safe() {
        let config = parse(&["--brokers", "127.0.0.1:9092"]);
        assert_eq!(config.producer.acks, Acks::All);
        assert!(config.producer.idempotence);
        assert_eq!(config.producer.partitioner, Partitioner::Murmur2Random);
        assert_eq!(config.consumer.commit_interval, Duration::from_secs(1));
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:50051");
        config.validate().unwrap();
    }

    #[test]
    fn missing_brokers_is_one_clear_line() {
        let err = parse(&[]).validate().unwrap_err().to_string();
        assert!(err.contains("--brokers"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn idempotence_needs_acks_all() {
        let err = parse(&["--brokers", "b:9092", "--acks", "1"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("--acks all"), "{err}");
        parse(&[
            "--brokers",
            "b:9092",
            "--acks",
            "1",
            "--idempotence",
            "false",
        ])
        .validate()
        .unwrap();
    }

    #[test]
    fn every_invalid_setting_is_reported_at_once() {
        let err = parse(&[
            "--acks",
            "0",
            "--subscribe-buffer",
            "0",
            "--max-message-bytes",
            "2048",
            "--max-request-bytes",
            "1024",
            "--http2-stream-window",
            "10",
            "--commit-interval",
            "0s",
            "--max-shared-partitions",
            "0",
        ])
        .validate()
        .unwrap_err();
        let problems = err.problems();
        for setting in [
            "--brokers",
            "--acks",
            "--subscribe-buffer",
            "--max-request-bytes",
            "--http2-stream-window",
            "--commit-interval",
            "--max-shared-partitions",
        ] {
            assert_eq!(
                problems
                    .iter()
                    .filter(|p| p.starts_with(setting) || p.contains(&format!("set {setting}")))
                    .count(),
                1,
                "{setting} once in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), 7, "{problems:#?}");
        assert_eq!(err.to_string().lines().count(), 7);
    }

    #[test]
    fn tls_settings_are_checked_together() {
        const CERT: [&str; 4] = ["--tls-cert", "c.pem", "--tls-key", "k.pem"];
        const CA: [&str; 2] = ["--tls-client-ca", "ca.pem"];
        let config = |extra: &[&[&str]]| {
            let mut args = vec!["--brokers", "b:9092"];
            args.extend(extra.iter().flat_map(|a| a.iter().copied()));
            parse(&args)
        };
        let problems = |extra: &[&[&str]]| config(extra).validate().unwrap_err().to_string();
        config(&[]).validate().unwrap();
        config(&[&CERT]).validate().unwrap();
        assert_eq!(
            config(&[&CERT, &CA]).server.tls.client_auth(),
            ClientAuth::Required
        );
        let err = problems(&[&CA]);
        assert!(err.contains("--tls-client-ca needs --tls-cert"), "{err}");
        let err = problems(&[&CERT, &["--tls-client-auth", "required"]]);
        assert!(err.contains("needs --tls-client-ca"), "{err}");
        let err = problems(&[&CERT, &CA, &["--tls-client-auth", "none"]]);
        assert!(err.contains("ignores --tls-client-ca"), "{err}");
    }
}
