//! The gateway against the physical limit: every figure next to a direct rdkafka
//! client on the same broker, measured in the same run, and their ratio.
//!
//! `scripts/bench` starts a broker and runs this (`cargo bench --bench gateway`);
//! `scripts/bench --quick` runs every scenario briefly, to check it still works.
//! The gateway runs as its own process (the release binary), so its CPU time and
//! memory are its own. Each scenario group is a module of its own; what they
//! share with the tests (broker, topics, the gateway process) is the test kit.

mod latency;
mod measure;
mod publish;
mod streams;
mod subscribe;
mod unary;

use kafka_gateway::transport::proto::{self, publisher_service_client::PublisherServiceClient};
use kafka_gateway_test_kit::{
    brokers_from, connect_when_listening, create_topic_on, endpoint, gateway_binary, unique,
    GatewayProcess,
};
use rdkafka::{producer::FutureProducer, ClientConfig};
use std::{process::Command, time::Duration};
use tonic::transport::Channel;

const LINGER_MS: u64 = 5;
/// Records in flight for the batched and streamed publish figures, on both paths.
/// Two windows, because librdkafka's throughput has a cliff in between: with 1 KiB
/// records a producer batch (batch.size, 1 MB) closes by size only when about 950
/// records are in flight, else by linger.ms.
const IN_FLIGHT: [usize; 2] = [1_000, 5_000];
/// `fetch.wait.max.ms` of consumers on both paths, for the end-to-end latency.
const FETCH_WAIT_MS: u64 = 10;

struct Settings {
    brokers: String,
    /// How long each closed-loop measurement runs.
    duration: Duration,
    /// Records per throughput measurement.
    records: usize,
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let brokers = brokers_from(
        "KAFKA_GATEWAY_BENCH_BROKERS",
        "run scripts/bench, which starts a broker",
    );
    let settings = Settings {
        brokers,
        duration: if quick {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        },
        records: std::env::var("KAFKA_GATEWAY_BENCH_RECORDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(if quick { 5_000 } else { 200_000 }),
    };
    let gateway = start_gateway(&settings.brokers);
    let channel = wide_channel(&gateway).await;
    let direct: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", LINGER_MS.to_string())
        .create()
        .expect("direct producer");

    println!(
        "# kafka-gateway benchmark{}",
        if quick {
            " (quick: figures mean nothing)"
        } else {
            ""
        }
    );
    println!();
    println!("Both paths: acks=all, idempotence, linger.ms={LINGER_MS}, consumers with fetch.wait.max.ms={FETCH_WAIT_MS}, one partition per topic.");
    println!();
    println!("| scenario | direct | gateway | ratio | gateway CPU per record |");
    println!("| --- | --- | --- | --- | --- |");

    unary::run(&settings, &gateway, &channel, &direct).await;
    let (mut busy, outside) = publish::run(&settings, &gateway, &channel, &direct).await;
    if wanted("subscribe") {
        busy.push(subscribe::run(&settings, &gateway, &channel, &direct).await);
    }
    if wanted("latency") {
        latency::run(&settings, &gateway, &channel, &direct, quick).await;
    }
    if wanted("streams") {
        streams::run(&settings, &gateway, quick).await;
    }

    if !outside.is_empty() {
        println!();
        println!(
            "Publish, CPU per record outside the gateway: {}.",
            outside.join("; ")
        );
    }
    if !busy.is_empty() {
        println!();
        println!(
            "Machine CPU busy (2 cores; broker, gateway and load generator): {}.",
            busy.join("; ")
        );
    }
    println!();
    println!(
        "Gateway peak RSS: {} MiB.",
        measure::peak_rss_kib(&gateway) / 1024
    );
    println!(
        "Direct baseline for batches and streams: one FutureProducer with the same records in flight, refilled record by record or (second batched row) in batches of 100 that each wait for all their acknowledgements, as a batched Publish call does. Every publish path runs twice, in turns with the others, each run on a new topic; its better run counts."
    );
}

/// Whether the scenario group `name` runs: all do unless
/// `KAFKA_GATEWAY_BENCH_ONLY` lists some (unary, publish, subscribe, latency,
/// streams), for work on one figure.
fn wanted(name: &str) -> bool {
    std::env::var("KAFKA_GATEWAY_BENCH_ONLY")
        .map_or(true, |only| only.split(',').any(|o| o.trim() == name))
}

fn row(scenario: &str, direct: &str, gateway: &str, ratio: f64, cpu_per_record: f64) {
    println!(
        "| {scenario} | {direct} | {gateway} | {ratio:.2} | {:.2} µs |",
        cpu_per_record * 1e6
    );
}

fn throughput(records_per_sec: f64, size: usize) -> String {
    format!(
        "{records_per_sec:.0} ({:.1})",
        records_per_sec * size as f64 / 1e6
    )
}

/// One unary Publish of one record with `value`.
async fn publish_one(
    client: &mut PublisherServiceClient<Channel>,
    topic: String,
    value: Vec<u8>,
) -> Result<(), tonic::Status> {
    let record = proto::Record {
        value: Some(value.into()),
        ..Default::default()
    };
    client
        .publish(proto::PublishRequest {
            topic,
            records: vec![record],
        })
        .await
        .map(|_| ())
}

/// A new topic of one partition for a scenario.
async fn new_topic(brokers: &str) -> String {
    let name = unique("bench");
    create_topic_on(brokers, &name, 1).await;
    name
}

/// The gateway binary as its own process, with the settings both paths share.
fn start_gateway(brokers: &str) -> GatewayProcess {
    let mut command = Command::new(gateway_binary!());
    command.env("KAFKA_GATEWAY_LOG", "warn");
    GatewayProcess::spawn_command(
        command,
        brokers,
        &[
            "--linger",
            &format!("{LINGER_MS}ms"),
            "--publish-stream-in-flight",
            &IN_FLIGHT.iter().max().unwrap().to_string(),
            "--kafka-config",
            &format!("fetch.wait.max.ms={FETCH_WAIT_MS}"),
        ],
    )
}

/// A connection to the gateway once it listens, with wide HTTP/2 windows: a
/// client's receive window bounds a Subscribe stream's throughput, and gRPC
/// clients commonly raise HTTP/2's 64 KiB default.
async fn wide_channel(gateway: &GatewayProcess) -> Channel {
    let endpoint = endpoint(gateway.addr())
        .initial_stream_window_size(Some(4 * 1024 * 1024))
        .initial_connection_window_size(Some(8 * 1024 * 1024));
    connect_when_listening(endpoint).await
}
