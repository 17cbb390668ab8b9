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
