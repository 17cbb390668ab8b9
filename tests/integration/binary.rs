//! The real binary: starts from flags, answers health and reflection (what grpcurl
//! needs), publishes, and exits 0 on SIGTERM. Bad configuration fails in one line.

use kafka_gateway::transport::proto::publisher_service_client::PublisherServiceClient;
use kafka_gateway_test_kit::*;
use std::process::Command;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

const BIN: &str = gateway_binary!();

#[tokio::test]
async fn serves_health_and_reflection_publishes_and_exits_cleanly_on_sigterm() {
    let mut gateway = GatewayProcess::spawn(gateway_binary!(), &brokers(), &[]);
    let channel = gateway.channel().await;

    let mut health = HealthClient::new(channel.clone());
    for service in [
        "",
        "kafka_gateway.v1.PublisherService",
        "kafka_gateway.v1.SubscriberService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = responses
        .message()
        .await
        .expect("reflection answer")
        .and_then(|r| r.message_response)
    else {
        panic!("no service list")
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "kafka_gateway.v1.PublisherService",
        "kafka_gateway.v1.SubscriberService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    let topic = topic(1).await;
    let mut publisher = PublisherServiceClient::new(channel);
    assert_eq!(
        publish(&mut publisher, &topic, vec![record(Some("k"), "v")])
            .await
            .len(),
        1
    );

    gateway.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = gateway.child.wait();
        (gateway, status)
    })
    .await
    .unwrap()
    .1
    .unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}

#[test]
fn bad_configuration_fails_at_start_with_one_clear_line() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["serve", "--brokers", "b:9092", "--linger", "soon"],
            "--linger",
        ),
        (
            &["serve", "--brokers", "b:9092", "--listen", "nowhere"],
            "--listen",
        ),
        (&["serve"], "--brokers"),
        (
            &["serve", "--brokers", "b:9092", "--acks", "1"],
            "--acks all",
        ),
        (
            &[
                "serve",
                "--brokers",
                "b:9092",
                "--kafka-config",
                "no.such.property=1",
            ],
            "no.such.property",
        ),
    ];
    for (args, expected) in cases {
        let output = Command::new(BIN)
            .args(args)
            .env("KAFKA_GATEWAY_LOG", "off")
            .output()
            .expect("run the binary");
        assert!(!output.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(expected),
            "{args:?}: {stderr}"
        );
    }
}

/// A librdkafka password in the environment never shows: not in `--help`, not in
/// the logs of a run at debug level, not in the error of a start that fails.
#[tokio::test]
async fn a_kafka_secret_never_appears_in_help_logs_or_errors() {
    const SECRET: &str = "hunter2-s3cr3t-value";
    let secret_setting = format!("sasl.password={SECRET}");
    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .env("KAFKA_GATEWAY_KAFKA_CONFIG", &secret_setting)
        .output()
        .expect("run --help");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("KAFKA_GATEWAY_KAFKA_CONFIG"), "{text}");
    assert!(!text.contains(SECRET), "--help shows the secret");

    let port = free_port();
    let child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--brokers", &brokers()])
        .env("KAFKA_GATEWAY_KAFKA_CONFIG", &secret_setting)
        .env("KAFKA_GATEWAY_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the binary");
    let channel = connect_when_listening(endpoint(([127, 0, 0, 1], port).into())).await;
    let topic = topic(1).await;
    publish(
        &mut PublisherServiceClient::new(channel),
        &topic,
        numbered(1),
    )
    .await;
    send_signal(child.id(), "TERM");
    let run = child.wait_with_output().expect("the gateway exits");
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(logs.contains("listening"), "{logs}");
    assert!(!logs.contains(SECRET), "the logs show the secret:\n{logs}");

    let failed = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--brokers", &brokers()])
        .env(
            "KAFKA_GATEWAY_KAFKA_CONFIG",
            format!("{secret_setting};security.protocol=BOGUS"),
        )
        .output()
        .expect("run the binary");
    let error = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(2), "{error}");
    assert!(error.contains("security.protocol"), "{error}");
    assert!(
        !error.contains(SECRET),
        "the error shows the secret: {error}"
    );
    // A misspelled key, or a secret librdkafka refuses, does not show it either.
    for setting in [
        format!("sasl.pasword={SECRET}"),
        format!("security.protocol={SECRET}"),
    ] {
        let failed = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--brokers", &brokers()])
            .args(["--kafka-config", &setting])
            .output()
            .expect("run the binary");
        let error = String::from_utf8_lossy(&failed.stderr);
        assert_eq!(failed.status.code(), Some(2), "{error}");
        assert!(
            error.contains(setting.split('=').next().unwrap()),
            "{error}"
        );
        assert!(
            !error.contains(SECRET),
            "the error shows the secret: {error}"
        );
    }
}
