//! Gateway configuration: one typed struct, read from flags, `KAFKA_GATEWAY_*`
//! environment variables and an optional TOML file, and validated once at start-up.
//!
//! Precedence: command line, then environment, then the file, then defaults. The
//! file uses the flag names as keys (`commit-interval = "500ms"`; `_` works as `-`),
//! so there is one list of settings and one place documenting them: `--help`.

use clap::{
    parser::ValueSource, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand,
    ValueEnum,
};
use std::{
    ffi::OsString,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

/// Largest record Kafka brokers accept by default (`message.max.bytes`).
const KAFKA_DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// The command line of the `kafka-gateway` binary.
#[derive(Debug, Parser)]
#[command(
    name = "kafka-gateway",
    version,
    about = "A gRPC gateway to Apache Kafka"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The binary's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API.
    Serve(Box<Config>),
}

/// Everything the gateway needs to run.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// TOML file with settings; keys are the flag names (`brokers = "h1:9092"`).
    #[arg(long, env = "KAFKA_GATEWAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address the gRPC server listens on.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_LISTEN",
        default_value = "127.0.0.1:50051",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

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

    /// How long to wait for the broker to answer a metadata or offset lookup before
    /// failing with UNAVAILABLE.
    #[arg(long, env = "KAFKA_GATEWAY_BROKER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub broker_timeout: Duration,

    /// How often a consumer group subscription commits the offsets of records it
    /// handed to its stream (they are also committed when the stream ends).
    #[arg(long, env = "KAFKA_GATEWAY_COMMIT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub commit_interval: Duration,

    /// Largest record accepted, in bytes: key, value and headers together.
    #[arg(long, env = "KAFKA_GATEWAY_MAX_MESSAGE_BYTES", default_value_t = KAFKA_DEFAULT_MAX_MESSAGE_BYTES, value_name = "BYTES")]
    pub max_message_bytes: usize,

    /// Largest gRPC request accepted, in bytes (a whole Publish batch).
    #[arg(long, env = "KAFKA_GATEWAY_MAX_REQUEST_BYTES", default_value_t = 16 * 1024 * 1024, value_name = "BYTES")]
    pub max_request_bytes: usize,

    /// Records of one PublishStream handed to the producer and not yet answered;
    /// past this the gateway stops reading the stream (HTTP/2 flow control).
    #[arg(
        long,
        env = "KAFKA_GATEWAY_PUBLISH_STREAM_IN_FLIGHT",
        default_value_t = 1000,
        value_name = "COUNT"
    )]
    pub publish_stream_in_flight: usize,

    /// Records the shared producer may hold before Publish fails with
    /// RESOURCE_EXHAUSTED (`queue.buffering.max.messages`).
    #[arg(
        long,
        env = "KAFKA_GATEWAY_PRODUCER_QUEUE_MESSAGES",
        default_value_t = 100_000,
        value_name = "COUNT"
    )]
    pub producer_queue_messages: usize,

    /// Bytes the shared producer may hold before Publish fails with
    /// RESOURCE_EXHAUSTED (`queue.buffering.max.kbytes`, here in bytes).
    #[arg(long, env = "KAFKA_GATEWAY_PRODUCER_QUEUE_BYTES", default_value_t = 128 * 1024 * 1024, value_name = "BYTES")]
    pub producer_queue_bytes: usize,

    /// Records read ahead for one Subscribe stream while the client is busy. A
    /// record counts once more per full 4 KiB of payload, at most half the total,
    /// so a stream holds about the larger of this many times 4 KiB and two of the
    /// largest records. Records cross from the consumer to the stream in batches
    /// of about half of it (256 records at most), so that one fills while the
    /// other empties.
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
    /// costs a few threads and up to 8 MiB of librdkafka read-ahead besides
    /// `--subscribe-buffer`.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_MAX_SUBSCRIPTIONS",
        default_value_t = 1000,
        value_name = "COUNT"
    )]
    pub max_subscriptions: usize,

    /// Share one Kafka consumer among Subscribe streams without a group that read
    /// the same partitions (fan-out): each stream then costs a cursor, not a
    /// consumer. Off gives every stream its own consumer.
    #[arg(long, env = "KAFKA_GATEWAY_FANOUT", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub fanout: bool,

    /// Bytes of records each shared partition feed keeps for streams behind the
    /// newest record. A stream that falls further behind ends with
    /// RESOURCE_EXHAUSTED instead of slowing the others.
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

    /// Partitions with a shared live feed at once. Each feed holds up to
    /// `--fanout-buffer-bytes`, and its partition's Kafka read-ahead half as much
    /// again; a stream that would need a feed more reads with a consumer of its own.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_MAX_SHARED_PARTITIONS",
        default_value_t = 256,
        value_name = "COUNT"
    )]
    pub max_shared_partitions: usize,

    /// Streams (calls) one client connection may have open at once (HTTP/2
    /// SETTINGS_MAX_CONCURRENT_STREAMS); a client opens more over more connections.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 1000,
        value_name = "COUNT"
    )]
    pub max_streams_per_connection: u32,

    /// Bytes a client may send on one stream ahead of what the gateway has read
    /// (HTTP/2 stream flow-control window). A PublishStream that stops reading
    /// holds at most this much of its client's records.
    #[arg(long, env = "KAFKA_GATEWAY_HTTP2_STREAM_WINDOW", default_value_t = 256 * 1024, value_name = "BYTES")]
    pub http2_stream_window: u32,

    /// Bytes a client may send on one connection, over all its streams, ahead of
    /// what the gateway has read (HTTP/2 connection window): the most a connection
    /// holds. Streams stalled together take at most their stream windows of it,
    /// and the rest carries the connection's other calls.
    #[arg(long, env = "KAFKA_GATEWAY_HTTP2_CONNECTION_WINDOW", default_value_t = 16 * 1024 * 1024, value_name = "BYTES")]
    pub http2_connection_window: u32,

    /// How often the gateway pings an idle client connection (HTTP/2 keepalive), to
    /// notice clients that vanished without closing and free their subscriptions.
    #[arg(long, env = "KAFKA_GATEWAY_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub keepalive_interval: Duration,

    /// How long a client may take to answer a keepalive ping before its connection,
    /// and every stream on it, is closed.
    #[arg(long, env = "KAFKA_GATEWAY_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub keepalive_timeout: Duration,

    /// How long shutdown may take in all: in-flight publishes, commits, consumer
    /// closes and the producer flush share this time.
    #[arg(long, env = "KAFKA_GATEWAY_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub shutdown_grace: Duration,

    /// Any librdkafka property for every Kafka client, as KEY=VALUE; repeat the flag
    /// (or separate with `;` in the environment variable). Applied last, so it
    /// overrides the gateway's own choices: e.g. `security.protocol=SASL_SSL`.
    #[arg(long = "kafka-config", env = "KAFKA_GATEWAY_KAFKA_CONFIG", value_delimiter = ';', value_parser = parse_key_value, value_name = "KEY=VALUE")]
    pub kafka_config: Vec<(String, String)>,
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

/// A configuration that cannot be used; the message is one line saying what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Cli {
    /// Parses the command line, the environment and the `--config` file, then
    /// validates the result.
    pub fn load<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let matches = Cli::command().try_get_matches_from(&args)?;
        let cli = Cli::from_arg_matches(&matches)?;
        let Command::Serve(config) = &cli.command;
        let Some(path) = &config.config else {
            return Ok(cli);
        };
        let serve = matches
            .subcommand_matches("serve")
            .expect("serve is the only subcommand");
        let file_args = file_arguments(path, serve).map_err(|e| {
            Cli::command().error(clap::error::ErrorKind::InvalidValue, e.to_string())
        })?;
        // Re-parse with the file's settings placed before the command line's own
        // arguments; only settings still at their default were taken from the file.
        let mut merged = vec![args[0].clone(), args[1].clone()];
        merged.extend(file_args.into_iter().map(OsString::from));
        merged.extend(args[2..].iter().cloned());
        Cli::try_parse_from(merged)
    }
}

impl Config {
    /// Checks what clap cannot check alone; the error is one line.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        if self.brokers.is_none() && !self.embedded_broker {
            return fail("no Kafka brokers: set --brokers host:port[,host:port] (KAFKA_GATEWAY_BROKERS), or --embedded-broker for a demo".into());
        }
        if let Some(brokers) = &self.brokers {
            if let Some(bad) = brokers.split(',').find(|b| b.trim().is_empty()) {
                return fail(format!("--brokers {brokers:?} has an empty entry {bad:?}: give host:port pairs separated by commas"));
            }
        }
        if self.idempotence && self.acks != Acks::All {
            return fail(format!(
                "--acks {} does not work with --idempotence true: use --acks all, or --idempotence false",
                self.acks.as_kafka()
            ));
        }
        if self.max_message_bytes == 0 {
            return fail("--max-message-bytes must be at least 1".into());
        }
        if self.max_request_bytes < self.max_message_bytes {
            return fail(format!(
                "--max-request-bytes ({}) must be at least --max-message-bytes ({}) so a largest record fits in a request",
                self.max_request_bytes, self.max_message_bytes
            ));
        }
        for (name, value) in [
            ("--subscribe-buffer", self.subscribe_buffer),
            ("--max-subscriptions", self.max_subscriptions),
            ("--max-shared-streams", self.max_shared_streams),
            ("--max-shared-partitions", self.max_shared_partitions),
            ("--fanout-buffer-bytes", self.fanout_buffer_bytes),
            ("--publish-stream-in-flight", self.publish_stream_in_flight),
            ("--producer-queue-messages", self.producer_queue_messages),
            (
                "--max-streams-per-connection",
                self.max_streams_per_connection as usize,
            ),
        ] {
            if value == 0 {
                return fail(format!("{name} must be at least 1"));
            }
        }
        // HTTP/2 windows are at most 2^31 - 1; a connection window starts at
        // 65,535 bytes and the gateway can only raise it.
        const MAX_WINDOW: u32 = (1 << 31) - 1;
        if !(1024..=MAX_WINDOW).contains(&self.http2_stream_window) {
            return fail(format!(
                "--http2-stream-window must be 1024 to {MAX_WINDOW} bytes, not {}",
                self.http2_stream_window
            ));
        }
        if !(self.http2_stream_window.max(65_535)..=MAX_WINDOW)
            .contains(&self.http2_connection_window)
        {
            return fail(format!(
                "--http2-connection-window must be at least 65535 and at least --http2-stream-window ({}), and at most {MAX_WINDOW} bytes, not {}",
                self.http2_stream_window, self.http2_connection_window
            ));
        }
        if self.producer_queue_bytes < 1024 {
            return fail("--producer-queue-bytes must be at least 1024".into());
        }
        for (name, value) in [
            ("--commit-interval", self.commit_interval),
            ("--delivery-timeout", self.delivery_timeout),
            ("--broker-timeout", self.broker_timeout),
            ("--keepalive-interval", self.keepalive_interval),
            ("--keepalive-timeout", self.keepalive_timeout),
        ] {
            if value.is_zero() {
                return fail(format!("{name} must be longer than zero"));
            }
        }
        Ok(())
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

/// Turns the TOML file into `--flag value` arguments for every setting that the
/// command line and environment left at its default.
fn file_arguments(path: &Path, matches: &ArgMatches) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigError(format!("config file {}: {}", path.display(), e.message()))
    })?;
    let command = Cli::command();
    let serve = command.find_subcommand("serve").expect("serve exists");
    let mut out = Vec::new();
    for (key, value) in table {
        let flag = key.replace('_', "-");
        let Some(arg) = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()) && flag != "config")
        else {
            return Err(ConfigError(format!(
                "config file {}: unknown setting {key:?} (see kafka-gateway serve --help)",
                path.display()
            )));
        };
        let id = arg.get_id().as_str();
        if !matches!(
            matches.value_source(id),
            None | Some(ValueSource::DefaultValue)
        ) {
            continue;
        }
        for v in toml_values(&key, value, path)? {
            out.push(format!("--{flag}={v}"));
        }
    }
    Ok(out)
}

fn toml_values(key: &str, value: toml::Value, path: &Path) -> Result<Vec<String>, ConfigError> {
    use toml::Value;
    let scalar = |v: Value| match v {
        Value::String(s) => Ok(s),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Float(f) => Ok(f.to_string()),
        Value::Boolean(b) => Ok(b.to_string()),
        other => Err(ConfigError(format!(
            "config file {}: {key:?} cannot be a {}",
            path.display(),
            other.type_str()
        ))),
    };
    match value {
        // `[kafka-config]` tables give librdkafka properties as keys.
        Value::Table(t) => t
            .into_iter()
            .map(|(k, v)| scalar(v).map(|v| format!("{k}={v}")))
            .collect(),
        Value::Array(items) => items.into_iter().map(scalar).collect(),
        v => scalar(v).map(|s| vec![s]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<Config, clap::Error> {
        let mut all = vec!["kafka-gateway", "serve"];
        all.extend_from_slice(args);
        Cli::load(all).map(|cli| {
            let Command::Serve(config) = cli.command;
            *config
        })
    }

    #[test]
    fn defaults_are_kafka_safe() {
        let config = serve(&["--brokers", "127.0.0.1:9092"]).unwrap();
        assert_eq!(config.acks, Acks::All);
        assert!(config.idempotence);
        assert_eq!(config.partitioner, Partitioner::Murmur2Random);
        assert_eq!(config.commit_interval, Duration::from_secs(1));
        assert_eq!(config.listen.to_string(), "127.0.0.1:50051");
        config.validate().unwrap();
    }

    #[test]
    fn missing_brokers_is_one_clear_line() {
        let err = serve(&[]).unwrap().validate().unwrap_err().to_string();
        assert!(err.contains("--brokers"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn idempotence_needs_acks_all() {
        let err = serve(&["--brokers", "b:9092", "--acks", "1"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("--acks all"), "{err}");
        serve(&[
            "--brokers",
            "b:9092",
            "--acks",
            "1",
            "--idempotence",
            "false",
        ])
        .unwrap()
        .validate()
        .unwrap();
    }

    #[test]
    fn bad_values_are_rejected_by_name() {
        let err = serve(&["--brokers", "b:9092", "--linger", "soon"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--linger"), "{err}");
        let err = serve(&["--brokers", "b:9092", "--kafka-config", "novalue"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("KEY=VALUE"), "{err}");
    }

    #[test]
    fn file_settings_apply_below_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            "brokers = \"file:9092\"\nclient_id = \"from-file\"\nlinger = \"20ms\"\n\n[kafka-config]\n\"security.protocol\" = \"SASL_SSL\"\n",
        )
        .unwrap();
        let config = serve(&[
            "--config",
            path.to_str().unwrap(),
            "--client-id",
            "from-cli",
        ])
        .unwrap();
        assert_eq!(config.brokers.as_deref(), Some("file:9092"));
        assert_eq!(config.client_id, "from-cli");
        assert_eq!(config.linger, Duration::from_millis(20));
        assert_eq!(
            config.kafka_config,
            vec![("security.protocol".into(), "SASL_SSL".into())]
        );
    }

    #[test]
    fn unknown_file_setting_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, "brokerz = \"x\"\n").unwrap();
        let err = serve(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("brokerz"), "{err}");
    }
}
