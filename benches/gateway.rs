//! The gateway against the physical limit: every figure next to a direct rdkafka
//! client on the same broker, measured in the same run, and their ratio.
//!
//! `scripts/bench` starts a broker and runs this (`cargo bench --bench gateway`);
//! `scripts/bench --quick` runs every scenario briefly, to check it still works.
//! The gateway runs as its own process (the release binary), so its CPU time and
//! memory are its own.

use futures::{stream::FuturesUnordered, StreamExt};
use kafka_gateway::transport::proto::{
    self, publish_stream_response::Result as Outcome,
    publisher_service_client::PublisherServiceClient,
};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    producer::{FutureProducer, FutureRecord},
    ClientConfig,
};
use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};
use tonic::transport::Channel;

const LINGER_MS: u64 = 5;

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
    let brokers = std::env::var("KAFKA_GATEWAY_BENCH_BROKERS")
        .expect("KAFKA_GATEWAY_BENCH_BROKERS is not set: run scripts/bench, which starts a broker");
    let settings = Settings {
        brokers,
        duration: if quick {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        },
        records: if quick { 5_000 } else { 200_000 },
    };
    let gateway = Gateway::start(&settings.brokers);
    let channel = gateway.channel().await;
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
    println!("Both paths: acks=all, idempotence, linger.ms={LINGER_MS}, one partition per topic.");
    println!();
    println!("| scenario | direct | gateway | ratio | gateway CPU per record |");
    println!("| --- | --- | --- | --- | --- |");

    for concurrency in [1, 16, 64, 256] {
        let topic = new_topic(&settings.brokers).await;
        let (direct_for_loop, topic_for_loop) = (direct.clone(), topic.clone());
        let base = closed_loop(concurrency, settings.duration, move || {
            let (direct, topic) = (direct_for_loop.clone(), topic_for_loop.clone());
            async move {
                direct
                    .send(
                        FutureRecord::<(), _>::to(&topic).payload(&[0u8; 100][..]),
                        Duration::from_secs(30),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e.to_string())
            }
        })
        .await;
        let cpu = gateway.cpu();
        let (channel_for_loop, topic_for_loop) = (channel.clone(), topic.clone());
        let via = closed_loop(concurrency, settings.duration, move || {
            let (mut client, topic) = (
                PublisherServiceClient::new(channel_for_loop.clone()),
                topic_for_loop.clone(),
            );
            async move {
                let record = proto::Record {
                    value: Some(vec![0u8; 100].into()),
                    ..Default::default()
                };
                client
                    .publish(proto::PublishRequest {
                        topic,
                        records: vec![record],
                    })
                    .await
                    .map(|_| ())
                    .map_err(|s| s.to_string())
            }
        })
        .await;
        let cpu_per_record = gateway.cpu().saturating_sub(cpu).as_secs_f64() / via.calls as f64;
        row(
            &format!(
                "unary Publish, 1 x 100 B per call, concurrency {concurrency}: calls/s (p50 / p99)"
            ),
            &base.describe(),
            &via.describe(),
            via.rate() / base.rate(),
            cpu_per_record,
        );
    }

    for size in [100usize, 1024] {
        let topic = new_topic(&settings.brokers).await;
        let base = direct_throughput(&direct, &topic, size, settings.records).await;
        let cpu = gateway.cpu();
        let batched = batched_publish(&channel, &topic, size, settings.records).await;
        let batched_cpu = gateway.cpu().saturating_sub(cpu).as_secs_f64() / settings.records as f64;
        row(
            &format!(
                "batched Publish, 100 x {size} B per call, 8 calls in flight: records/s (MB/s)"
            ),
            &throughput(base, size),
            &throughput(batched, size),
            batched / base,
            batched_cpu,
        );
        let cpu = gateway.cpu();
        let streamed = publish_stream(&channel, &topic, size, settings.records).await;
        let streamed_cpu =
            gateway.cpu().saturating_sub(cpu).as_secs_f64() / settings.records as f64;
        row(
            &format!("PublishStream, {size} B records: records/s (MB/s)"),
            &throughput(base, size),
            &throughput(streamed, size),
            streamed / base,
            streamed_cpu,
        );
    }
    // Subscribe: drain the same records through one stream and one direct consumer.
    let topic = new_topic(&settings.brokers).await;
    let drain = settings.records * 5;
    direct_throughput(&direct, &topic, 100, drain).await;
    let base = direct_consume(&settings.brokers, &topic, drain).await;
    let cpu = gateway.cpu();
    let via = subscribe_drain(&channel, &topic, drain).await;
    let subscribe_cpu = gateway.cpu().saturating_sub(cpu).as_secs_f64() / drain as f64;
    row(
        &format!(
            "Subscribe, draining {drain} records of 100 B through one stream: records/s (MB/s)"
        ),
        &throughput(base, 100),
        &throughput(via, 100),
        via / base,
        subscribe_cpu,
    );

    println!();
    println!("Gateway peak RSS: {} MiB.", gateway.peak_rss_kib() / 1024);
    println!(
        "Direct baseline for batches and streams: one FutureProducer with 1,000 records in flight."
    );
}

fn row(scenario: &str, direct: &str, gateway: &str, ratio: f64, cpu_per_record: f64) {
    println!(
        "| {scenario} | {direct} | {gateway} | {ratio:.2} | {:.1} µs |",
        cpu_per_record * 1e6
    );
}

fn throughput(records_per_sec: f64, size: usize) -> String {
    format!(
        "{records_per_sec:.0} ({:.1})",
        records_per_sec * size as f64 / 1e6
    )
}

/// Results of a closed loop: calls completed and their latencies.
struct Loop {
    calls: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Loop {
    fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }

    fn describe(&self) -> String {
        format!(
            "{:.0} ({:.2} / {:.2} ms)",
            self.rate(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3
        )
    }
}

/// `concurrency` workers each run `call` back to back for `duration`.
async fn closed_loop<F, Fut>(concurrency: usize, duration: Duration, call: F) -> Loop
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let end = start + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < end {
                    let t = Instant::now();
                    call().await.expect("call failed during the benchmark");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Loop {
        calls: latencies.len(),
        elapsed,
        latencies,
    }
}

/// Records/s of the direct producer with 1,000 records in flight.
async fn direct_throughput(
    direct: &FutureProducer,
    topic: &str,
    size: usize,
    records: usize,
) -> f64 {
    let payload = vec![0u8; size];
    let start = Instant::now();
    let mut in_flight: FuturesUnordered<rdkafka::producer::DeliveryFuture> =
        FuturesUnordered::new();
    for _ in 0..records {
        if in_flight.len() >= 1000 {
            in_flight
                .next()
                .await
                .unwrap()
                .expect("delivery future")
                .expect("delivered");
        }
        let record = FutureRecord::<(), _>::to(topic).payload(&payload[..]);
        in_flight.push(
            direct
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueued"),
        );
    }
    while let Some(done) = in_flight.next().await {
        done.expect("delivery future").expect("delivered");
    }
    records as f64 / start.elapsed().as_secs_f64()
}

/// Records/s through batched Publish calls of 100 records, 8 calls in flight.
async fn batched_publish(channel: &Channel, topic: &str, size: usize, records: usize) -> f64 {
    let batch: Vec<_> = (0..100)
        .map(|_| proto::Record {
            value: Some(vec![0u8; size].into()),
            ..Default::default()
        })
        .collect();
    let start = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for _ in 0..records / 100 {
        if in_flight.len() >= 8 {
            in_flight.next().await.unwrap();
        }
        let mut client = PublisherServiceClient::new(channel.clone());
        let request = proto::PublishRequest {
            topic: topic.into(),
            records: batch.clone(),
        };
        in_flight.push(async move { client.publish(request).await.expect("publish") });
    }
    while in_flight.next().await.is_some() {}
    records as f64 / start.elapsed().as_secs_f64()
}

/// Records/s through one PublishStream.
async fn publish_stream(channel: &Channel, topic: &str, size: usize, records: usize) -> f64 {
    let value: bytes::Bytes = vec![0u8; size].into();
    let topic = topic.to_string();
    let requests = futures::stream::iter((0..records).map(move |i| proto::PublishStreamRequest {
        topic: if i == 0 { topic.clone() } else { String::new() },
        record: Some(proto::Record {
            value: Some(value.clone()),
            ..Default::default()
        }),
        correlation_id: String::new(),
    }));
    let start = Instant::now();
    let mut client = PublisherServiceClient::new(channel.clone());
    let mut answers = client
        .publish_stream(requests)
        .await
        .expect("stream")
        .into_inner();
    let mut acked = 0;
    while let Some(answer) = answers.message().await.expect("answers") {
        match answer.result {
            Some(Outcome::Ack(_)) => acked += 1,
            other => panic!("record failed during the benchmark: {other:?}"),
        }
    }
    assert_eq!(acked, records);
    records as f64 / start.elapsed().as_secs_f64()
}

/// Records/s of a direct consumer reading `records` from the start of `topic`.
async fn direct_consume(brokers: &str, topic: &str, records: usize) -> f64 {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-direct")
        .set("enable.auto.commit", "false")
        .create()
        .expect("direct consumer");
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    let start = Instant::now();
    for _ in 0..records {
        consumer.recv().await.expect("record");
    }
    records as f64 / start.elapsed().as_secs_f64()
}

/// Records/s of one Subscribe stream reading `records` from the start of `topic`.
async fn subscribe_drain(channel: &Channel, topic: &str, records: usize) -> f64 {
    let mut client =
        proto::subscriber_service_client::SubscriberServiceClient::new(channel.clone());
    let request = proto::SubscribeRequest {
        topics: vec![topic.into()],
        start: proto::StartPosition::Earliest as i32,
        ..Default::default()
    };
    let start = Instant::now();
    let mut stream = client
        .subscribe(request)
        .await
        .expect("subscribe")
        .into_inner();
    let mut seen = 0;
    while seen < records {
        if let Some(proto::subscribe_response::Event::Record(_)) =
            stream.message().await.expect("stream").expect("open").event
        {
            seen += 1;
        }
    }
    records as f64 / start.elapsed().as_secs_f64()
}

async fn new_topic(brokers: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "bench-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin");
    let topic = NewTopic::new(&name, 1, TopicReplication::Fixed(1));
    admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create topic")[0]
        .as_ref()
        .expect("topic created");
    name
}

/// The gateway binary, as its own process.
struct Gateway {
    child: Child,
    port: u16,
}

impl Gateway {
    fn start(brokers: &str) -> Gateway {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_kafka-gateway"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--brokers",
                brokers,
            ])
            .args(["--linger", &format!("{LINGER_MS}ms")])
            .env("KAFKA_GATEWAY_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start the gateway");
        Gateway { child, port }
    }

    async fn channel(&self) -> Channel {
        for _ in 0..600 {
            if let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{}", self.port))
                .unwrap()
                .connect()
                .await
            {
                return channel;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway did not listen");
    }

    /// CPU time (user + system) the gateway process used so far.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_secs_f64(ticks as f64 / 100.0)
    }

    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
