use super::*;
use crate::config::{Acks, Partitioner};
use std::time::Duration;

fn serve(args: &[&str]) -> Result<Config, clap::Error> {
    let mut all = vec!["kafka-gateway", "serve"];
    all.extend_from_slice(args);
    Cli::load(all).map(|cli| {
        let Command::Serve(config) = cli.command;
        *config
    })
}

/// Every setting's flag and environment variable as released; TOML keys are the
/// flag names. Deployments depend on them: a rename must fail here.
const SPELLINGS: [(&str, &str); 36] = [
    ("config", "KAFKA_GATEWAY_CONFIG"),
    ("listen", "KAFKA_GATEWAY_LISTEN"),
    ("brokers", "KAFKA_GATEWAY_BROKERS"),
    ("embedded-broker", "KAFKA_GATEWAY_EMBEDDED_BROKER"),
    ("client-id", "KAFKA_GATEWAY_CLIENT_ID"),
    ("acks", "KAFKA_GATEWAY_ACKS"),
    ("idempotence", "KAFKA_GATEWAY_IDEMPOTENCE"),
    ("linger", "KAFKA_GATEWAY_LINGER"),
    ("partitioner", "KAFKA_GATEWAY_PARTITIONER"),
    ("delivery-timeout", "KAFKA_GATEWAY_DELIVERY_TIMEOUT"),
    ("broker-timeout", "KAFKA_GATEWAY_BROKER_TIMEOUT"),
    ("commit-interval", "KAFKA_GATEWAY_COMMIT_INTERVAL"),
    ("max-message-bytes", "KAFKA_GATEWAY_MAX_MESSAGE_BYTES"),
    ("max-request-bytes", "KAFKA_GATEWAY_MAX_REQUEST_BYTES"),
    (
        "publish-stream-in-flight",
        "KAFKA_GATEWAY_PUBLISH_STREAM_IN_FLIGHT",
    ),
    (
        "producer-queue-messages",
        "KAFKA_GATEWAY_PRODUCER_QUEUE_MESSAGES",
    ),
    ("producer-queue-bytes", "KAFKA_GATEWAY_PRODUCER_QUEUE_BYTES"),
    ("subscribe-buffer", "KAFKA_GATEWAY_SUBSCRIBE_BUFFER"),
    ("max-subscriptions", "KAFKA_GATEWAY_MAX_SUBSCRIPTIONS"),
    ("fanout", "KAFKA_GATEWAY_FANOUT"),
    ("fanout-buffer-bytes", "KAFKA_GATEWAY_FANOUT_BUFFER_BYTES"),
    ("max-shared-streams", "KAFKA_GATEWAY_MAX_SHARED_STREAMS"),
    (
        "max-shared-partitions",
        "KAFKA_GATEWAY_MAX_SHARED_PARTITIONS",
    ),
    (
        "max-streams-per-connection",
        "KAFKA_GATEWAY_MAX_STREAMS_PER_CONNECTION",
    ),
    ("http2-stream-window", "KAFKA_GATEWAY_HTTP2_STREAM_WINDOW"),
    (
        "http2-connection-window",
        "KAFKA_GATEWAY_HTTP2_CONNECTION_WINDOW",
    ),
    ("keepalive-interval", "KAFKA_GATEWAY_KEEPALIVE_INTERVAL"),
    ("keepalive-timeout", "KAFKA_GATEWAY_KEEPALIVE_TIMEOUT"),
    ("shutdown-grace", "KAFKA_GATEWAY_SHUTDOWN_GRACE"),
    ("kafka-config", "KAFKA_GATEWAY_KAFKA_CONFIG"),
    ("tls-cert", "KAFKA_GATEWAY_TLS_CERT"),
    ("tls-key", "KAFKA_GATEWAY_TLS_KEY"),
    ("tls-client-ca", "KAFKA_GATEWAY_TLS_CLIENT_CA"),
    ("tls-client-auth", "KAFKA_GATEWAY_TLS_CLIENT_AUTH"),
    ("tls-reload-interval", "KAFKA_GATEWAY_TLS_RELOAD_INTERVAL"),
    (
        "max-subscriptions-per-connection",
        "KAFKA_GATEWAY_MAX_SUBSCRIPTIONS_PER_CONNECTION",
    ),
];

#[test]
fn flags_and_environment_variables_keep_their_spellings() {
    let command = Cli::command();
    let serve = command.find_subcommand("serve").unwrap();
    let mut found: Vec<(String, String)> = serve
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            let env = arg.get_env()?.to_str()?;
            Some((long.to_string(), env.to_string()))
        })
        .collect();
    found.sort();
    let mut released: Vec<(String, String)> = SPELLINGS
        .iter()
        .map(|(long, env)| (long.to_string(), env.to_string()))
        .collect();
    released.sort();
    assert_eq!(found, released);
}

/// A value for every setting but `--config` and `--embedded-broker` (which
/// conflicts with `--brokers`), none of them the default.
const EVERY_SETTING: [(&str, &str); 28] = [
    ("listen", "127.0.0.1:6000"),
    ("brokers", "b1:9092,b2:9092"),
    ("client-id", "spelled"),
    ("acks", "1"),
    ("idempotence", "false"),
    ("linger", "7ms"),
    ("partitioner", "consistent"),
    ("delivery-timeout", "31s"),
    ("broker-timeout", "11s"),
    ("commit-interval", "2s"),
    ("max-message-bytes", "1000"),
    ("max-request-bytes", "2000"),
    ("publish-stream-in-flight", "3"),
    ("producer-queue-messages", "4"),
    ("producer-queue-bytes", "5000"),
    ("subscribe-buffer", "6"),
    ("max-subscriptions", "7"),
    ("fanout", "false"),
    ("fanout-buffer-bytes", "8"),
    ("max-shared-streams", "9"),
    ("max-shared-partitions", "10"),
    ("max-streams-per-connection", "11"),
    ("http2-stream-window", "2048"),
    ("http2-connection-window", "70000"),
    ("keepalive-interval", "12s"),
    ("keepalive-timeout", "13s"),
    ("shutdown-grace", "14s"),
    ("kafka-config", "socket.nagle.disable=true"),
];

fn assert_every_setting(config: &Config) {
    let Config {
        config: _,
        server,
        kafka,
        producer,
        consumer,
        fanout,
    } = config;
    assert_eq!(server.listen.to_string(), "127.0.0.1:6000");
    assert_eq!(server.max_request_bytes, 2000);
    assert_eq!(server.max_streams_per_connection, 11);
    assert_eq!(server.http2_stream_window, 2048);
    assert_eq!(server.http2_connection_window, 70000);
    assert_eq!(server.keepalive_interval, Duration::from_secs(12));
    assert_eq!(server.keepalive_timeout, Duration::from_secs(13));
    assert_eq!(server.shutdown_grace, Duration::from_secs(14));
    assert_eq!(kafka.brokers.as_deref(), Some("b1:9092,b2:9092"));
    assert!(!kafka.embedded_broker);
    assert_eq!(kafka.client_id, "spelled");
    assert_eq!(kafka.broker_timeout, Duration::from_secs(11));
    assert_eq!(kafka.max_message_bytes, 1000);
    assert_eq!(
        kafka.kafka_config,
        vec![("socket.nagle.disable".into(), "true".into())]
    );
    assert_eq!(producer.acks, Acks::Leader);
    assert!(!producer.idempotence);
    assert_eq!(producer.linger, Duration::from_millis(7));
    assert_eq!(producer.partitioner, Partitioner::Consistent);
    assert_eq!(producer.delivery_timeout, Duration::from_secs(31));
    assert_eq!(producer.producer_queue_messages, 4);
    assert_eq!(producer.producer_queue_bytes, 5000);
    assert_eq!(producer.publish_stream_in_flight, 3);
    assert_eq!(consumer.commit_interval, Duration::from_secs(2));
    assert_eq!(consumer.subscribe_buffer, 6);
    assert_eq!(consumer.max_subscriptions, 7);
    assert!(!fanout.enabled);
    assert_eq!(fanout.fanout_buffer_bytes, 8);
    assert_eq!(fanout.max_shared_streams, 9);
    assert_eq!(fanout.max_shared_partitions, 10);
}

#[test]
fn released_flags_land_in_their_groups() {
    let args: Vec<String> = EVERY_SETTING
        .iter()
        .map(|(flag, value)| format!("--{flag}={value}"))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_every_setting(&serve(&args).unwrap());
}

#[test]
fn released_file_keys_land_in_their_groups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let mut text = String::new();
    for (i, (key, value)) in EVERY_SETTING.iter().enumerate() {
        if *key == "kafka-config" {
            continue;
        }
        // Both spellings of a key work: `max-message-bytes` and `max_message_bytes`.
        let key = if i % 2 == 0 {
            key.to_string()
        } else {
            key.replace('-', "_")
        };
        text.push_str(&format!("{key} = \"{value}\"\n"));
    }
    text.push_str("\n[kafka-config]\n\"socket.nagle.disable\" = true\n");
    std::fs::write(&path, text).unwrap();
    assert_every_setting(&serve(&["--config", path.to_str().unwrap()]).unwrap());
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
    assert_eq!(config.kafka.brokers.as_deref(), Some("file:9092"));
    assert_eq!(config.kafka.client_id, "from-cli");
    assert_eq!(config.producer.linger, Duration::from_millis(20));
    assert_eq!(
        config.kafka.kafka_config,
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

#[test]
fn help_groups_settings_under_headings() {
    let mut command = Cli::command();
    let help = command
        .find_subcommand_mut("serve")
        .unwrap()
        .render_long_help()
        .to_string();
    let mut at = 0;
    for heading in [
        "Server:",
        "Kafka:",
        "Publishing:",
        "Subscribing:",
        "Fan-out:",
    ] {
        let found = help[at..]
            .find(heading)
            .unwrap_or_else(|| panic!("{heading} after byte {at} in\n{help}"));
        at += found;
    }
}
