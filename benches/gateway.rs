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
    let brokers = std::env::var("KAFKA_GATEWAY_BENCH_BROKERS")
        .expect("KAFKA_GATEWAY_BENCH_BROKERS is not set: run scripts/bench, which starts a broker");
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
    println!("Both paths: acks=all, idempotence, linger.ms={LINGER_MS}, consumers with fetch.wait.max.ms={FETCH_WAIT_MS}, one partition per topic.");
    println!();
    println!("| scenario | direct | gateway | ratio | gateway CPU per record |");
    println!("| --- | --- | --- | --- | --- |");

    for concurrency in [1, 16, 64, 256].into_iter().filter(|_| wanted("unary")) {
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
                publish_one(&mut client, topic, vec![0u8; 100])
                    .await
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

    // Machine CPU in use during each publish phase: what the three processes left.
    let mut busy = Vec::new();
    // CPU per record of the direct producer and of the gRPC client, each in this
    // process: what the gateway's own figure compares with.
    let mut outside = Vec::new();
    let publish_cases = [100usize, 1024]
        .into_iter()
        .flat_map(|size| IN_FLIGHT.map(|window| (size, window)));
    for (size, window) in publish_cases.filter(|_| wanted("publish")) {
        let records = settings.records;
        let brokers = settings.brokers.as_str();
        let (direct, channel) = (&direct, &channel);
        // Each path twice, in turns, each run on a topic of its own: the better run
        // of each counts, so a broker that slows down during the case favours no
        // path.
        let (mut direct_run, mut direct_batched_run, mut batched_run, mut stream_run) =
            (None, None, None, None);
        for _ in 0..2 {
            let run = measured(brokers, &gateway, records, |topic| async move {
                direct_throughput(direct, &topic, size, records, window).await
            })
            .await;
            direct_run = Some(run.better(direct_run));
            let run = measured(brokers, &gateway, records, |topic| async move {
                direct_batched_throughput(direct, &topic, size, records, window).await
            })
            .await;
            direct_batched_run = Some(run.better(direct_batched_run));
            let run = measured(brokers, &gateway, records, |topic| async move {
                batched_publish(channel, &topic, size, records, window).await
            })
            .await;
            batched_run = Some(run.better(batched_run));
            let run = measured(brokers, &gateway, records, |topic| async move {
                publish_stream(channel, &topic, size, records, window).await
            })
            .await;
            stream_run = Some(run.better(stream_run));
        }
        let [direct_run, direct_batched_run, batched_run, stream_run] =
            [direct_run, direct_batched_run, batched_run, stream_run].map(Option::unwrap);
        let (base, base_batched) = (direct_run.rate, direct_batched_run.rate);
        let (batched, batched_cpu) = (batched_run.rate, batched_run.gateway_cpu);
        let (streamed, streamed_cpu) = (stream_run.rate, stream_run.gateway_cpu);
        busy.push(format!(
            "{size} B x {window} in flight: direct {:.0} %, batched {:.0} %, stream {:.0} %",
            direct_run.busy, batched_run.busy, stream_run.busy
        ));
        outside.push(format!(
            "{size} B x {window} in flight: direct producer {:.2} µs, gRPC client batched {:.2} µs, stream {:.2} µs",
            direct_run.client_cpu * 1e6,
            batched_run.client_cpu * 1e6,
            stream_run.client_cpu * 1e6
        ));
        row(
            &format!(
                "batched Publish, 100 x {size} B per call, {window} records in flight ({} calls): records/s (MB/s)",
                window / 100
            ),
            &throughput(base, size),
            &throughput(batched, size),
            batched / base,
            batched_cpu,
        );
        row(
            "batched Publish as above, against a direct producer that also waits for each 100 records: records/s (MB/s)",
            &throughput(base_batched, size),
            &throughput(batched, size),
            batched / base_batched,
            batched_cpu,
        );
        row(
            &format!("PublishStream, {size} B records, {window} in flight: records/s (MB/s)"),
            &throughput(base, size),
            &throughput(streamed, size),
            streamed / base,
            streamed_cpu,
        );
    }
    if wanted("subscribe") {
        busy.push(subscribe_throughput(&settings, &gateway, &channel, &direct).await);
    }
    if wanted("latency") {
        end_to_end(&settings, &gateway, &channel, &direct, quick).await;
    }
    if wanted("streams") {
        idle_streams(&settings, &gateway, quick).await;
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
    println!("Gateway peak RSS: {} MiB.", gateway.peak_rss_kib() / 1024);
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

/// Subscribe: the same records drained through one stream and one direct consumer.
async fn subscribe_throughput(
    settings: &Settings,
    gateway: &Gateway,
    channel: &Channel,
    direct: &FutureProducer,
) -> String {
    let topic = new_topic(&settings.brokers).await;
    let drain = settings.records * 5;
    direct_throughput(direct, &topic, 100, drain, 1_000).await;
    // The direct consumer's rate varies from run to run: its best of two is the
    // limit the gateway is held to.
    let m = machine();
    let own = own_cpu();
    let first = direct_consume(&settings.brokers, &topic, drain).await;
    let second = direct_consume(&settings.brokers, &topic, drain).await;
    let direct_cpu = (own_cpu() - own).as_secs_f64() / (2 * drain) as f64;
    let base = if first.rate >= second.rate {
        first
    } else {
        second
    };
    let mut busy = vec![format!("direct {:.0} %", busy_since(m))];
    let mut waits = vec![format!("direct {:.0} ms", base.first.as_secs_f64() * 1e3)];
    let mut cpu_use = vec![format!("direct consumer {:.2} µs", direct_cpu * 1e6)];
    for (batch, shared) in [(0, false), (1000, false), (1000, true)] {
        let cpu = gateway.cpu();
        let m = machine();
        let (own, started) = (own_cpu(), Instant::now());
        let via = subscribe_drain(channel, &topic, drain, batch, shared).await;
        let client_cpu = own_cpu() - own;
        let label = if shared {
            format!("batch {batch}, shared feed")
        } else {
            format!("batch {batch}")
        };
        busy.push(format!(
            "gateway ({label}) {:.0} % (load generator {:.0} % of one core)",
            busy_since(m),
            client_cpu.as_secs_f64() * 100.0 / started.elapsed().as_secs_f64()
        ));
        waits.push(format!(
            "gateway ({label}) {:.0} ms",
            via.first.as_secs_f64() * 1e3
        ));
        cpu_use.push(format!(
            "gRPC client ({label}) {:.2} µs",
            client_cpu.as_secs_f64() * 1e6 / drain as f64
        ));
        let subscribe_cpu = gateway.cpu().saturating_sub(cpu).as_secs_f64() / drain as f64;
        let events = match (batch, shared) {
            (0, _) => "one record per event".to_string(),
            (_, false) => format!("max_batch_records {batch}"),
            (_, true) => format!("max_batch_records {batch}, from offset 0 through a shared feed"),
        };
        row(
            &format!(
                "Subscribe, draining {drain} records of 100 B through one stream, {events}: records/s from the first record (MB/s)"
            ),
            &throughput(base.rate, 100),
            &throughput(via.rate, 100),
            via.rate / base.rate,
            subscribe_cpu,
        );
    }
    println!();
    println!(
        "Subscribe drain, wait for the first record (subscription set-up and first fetch): {}.",
        waits.join(", ")
    );
    println!(
        "Subscribe drain, CPU per record outside the gateway: {}.",
        cpu_use.join(", ")
    );
    format!("Subscribe drain: {}", busy.join(", "))
}

/// End-to-end latency at a fixed offered rate (open loop: each record is sent at
/// its scheduled time whatever the earlier ones did, and its latency counts from
/// that time), publish to Subscribe, against producer to consumer.
async fn end_to_end(
    settings: &Settings,
    gateway: &Gateway,
    channel: &Channel,
    direct: &FutureProducer,
    quick: bool,
) {
    let rate = 1000u64;
    let (warm_up, measured) = if quick {
        (Duration::from_millis(500), Duration::from_secs(1))
    } else {
        (Duration::from_secs(2), Duration::from_secs(10))
    };
    let total = rate * (warm_up + measured).as_millis() as u64 / 1000;
    let origin = Instant::now();

    let topic = new_topic(&settings.brokers).await;
    let base = {
        let received = direct_latencies(&settings.brokers, &topic, total, origin);
        offer(rate, total, origin, |payload| {
            let (direct, topic) = (direct.clone(), topic.clone());
            async move {
                direct
                    .send(
                        FutureRecord::<(), _>::to(&topic).payload(&payload),
                        Duration::from_secs(30),
                    )
                    .await
                    .expect("delivered");
            }
        })
        .await;
        received.await.unwrap()
    };

    let topic = new_topic(&settings.brokers).await;
    let cpu = gateway.cpu();
    let via = {
        let received = subscribe_latencies(channel, &topic, total, origin).await;
        offer(rate, total, origin, |payload| {
            let mut client = PublisherServiceClient::new(channel.clone());
            let topic = topic.clone();
            async move {
                publish_one(&mut client, topic, payload)
                    .await
                    .expect("publish");
            }
        })
        .await;
        received.await.unwrap()
    };
    let cpu_per_record = gateway.cpu().saturating_sub(cpu).as_secs_f64() / total as f64;
    let warm = |mut latencies: Vec<(Duration, Duration)>| {
        let mut kept: Vec<Duration> = latencies
            .drain(..)
            .filter(|(sent, _)| *sent >= warm_up)
            .map(|(_, latency)| latency)
            .collect();
        kept.sort_unstable();
        kept
    };
    let (base, via) = (warm(base), warm(via));
    let pct = |l: &[Duration], p: f64| l[((l.len() as f64 - 1.0) * p).round() as usize];
    let describe = |l: &[Duration]| {
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            pct(l, 0.5).as_secs_f64() * 1e3,
            pct(l, 0.99).as_secs_f64() * 1e3,
            pct(l, 0.999).as_secs_f64() * 1e3
        )
    };
    let added = pct(&via, 0.99).as_secs_f64() - pct(&base, 0.99).as_secs_f64();
    println!(
        "| end to end at {rate} records/s offered, open loop, 100 B: p50 / p99 / p99.9 (gateway p99 minus direct: {:+.1} ms) | {} | {} | {:.2} | {:.1} µs |",
        added * 1e3,
        describe(&base),
        describe(&via),
        pct(&via, 0.99).as_secs_f64() / pct(&base, 0.99).as_secs_f64(),
        cpu_per_record * 1e6
    );
}

/// Sends `total` records at `rate` per second, each carrying its scheduled send
/// time (since `origin`) in its first 8 bytes, without waiting for earlier sends.
async fn offer<F, Fut>(rate: u64, total: u64, origin: Instant, send: F)
where
    F: Fn(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let start = tokio::time::Instant::now();
    let mut sends = Vec::with_capacity(total as usize);
    for i in 0..total {
        let at = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        tokio::time::sleep_until(at).await;
        let scheduled = at.into_std().duration_since(origin);
        let mut payload = vec![0u8; 100];
        payload[..8].copy_from_slice(&(scheduled.as_nanos() as u64).to_le_bytes());
        sends.push(tokio::spawn(send(payload)));
    }
    for send in sends {
        send.await.unwrap();
    }
}

/// The scheduled send time and latency of one received record.
fn latency_of(payload: &[u8], origin: Instant) -> (Duration, Duration) {
    let sent = Duration::from_nanos(u64::from_le_bytes(payload[..8].try_into().unwrap()));
    (sent, origin.elapsed().saturating_sub(sent))
}

/// A direct consumer of a new `topic` collecting `total` latencies.
fn direct_latencies(
    brokers: &str,
    topic: &str,
    total: u64,
    origin: Instant,
) -> tokio::task::JoinHandle<Vec<(Duration, Duration)>> {
    use rdkafka::Message;
    // The topic is new: from its beginning is from now, with nothing missed.
    let consumer = direct_consumer(brokers, topic);
    tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(total as usize);
        while (latencies.len() as u64) < total {
            let message = consumer.recv().await.expect("record");
            latencies.push(latency_of(message.payload().unwrap(), origin));
        }
        latencies
    })
}

/// A Subscribe stream at the end of `topic` collecting `total` latencies; open
/// when this returns.
async fn subscribe_latencies(
    channel: &Channel,
    topic: &str,
    total: u64,
    origin: Instant,
) -> tokio::task::JoinHandle<Vec<(Duration, Duration)>> {
    let mut client =
        proto::subscriber_service_client::SubscriberServiceClient::new(channel.clone());
    let request = proto::SubscribeRequest {
        topics: vec![topic.into()],
        ..Default::default()
    };
    let mut stream = client
        .subscribe(request)
        .await
        .expect("subscribe")
        .into_inner();
    tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(total as usize);
        while (latencies.len() as u64) < total {
            if let Some(proto::subscribe_response::Event::Record(record)) =
                stream.message().await.expect("stream").expect("open").event
            {
                latencies.push(latency_of(&record.value.unwrap(), origin));
            }
        }
        latencies
    })
}

/// Gateway memory per idle Subscribe stream (all reading one topic's live feed),
/// then one record delivered to every stream.
async fn idle_streams(settings: &Settings, gateway: &Gateway, quick: bool) {
    let counts: &[usize] = if quick {
        &[0, 10, 100]
    } else {
        &[0, 100, 1_000, 10_000]
    };
    let topic = new_topic(&settings.brokers).await;
    // Many clients, each with a connection carrying up to 100 streams.
    let mut channels = Vec::new();
    let mut streams = Vec::new();
    let mut rss_at_zero = 0;
    let mut figures = Vec::new();
    for &count in counts {
        while streams.len() < count {
            if streams.len() % 100 == 0 {
                channels.push(gateway.plain_channel().await);
            }
            let mut client = proto::subscriber_service_client::SubscriberServiceClient::new(
                channels.last().unwrap().clone(),
            );
            let request = proto::SubscribeRequest {
                topics: vec![topic.clone()],
                ..Default::default()
            };
            streams.push(
                client
                    .subscribe(request)
                    .await
                    .expect("subscribe")
                    .into_inner(),
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = gateway.rss_kib();
        if count == 0 {
            rss_at_zero = rss;
        } else {
            figures.push(format!(
                "{count}: {:.1} KiB",
                rss.saturating_sub(rss_at_zero) as f64 / count as f64
            ));
        }
    }
    // One record to every stream.
    let count = streams.len();
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                loop {
                    if let Some(proto::subscribe_response::Event::Record(record)) =
                        stream.message().await.expect("stream").expect("open").event
                    {
                        return record.offset;
                    }
                }
            })
        })
        .collect();
    let start = Instant::now();
    let mut client = PublisherServiceClient::new(gateway.plain_channel().await);
    publish_one(&mut client, topic.clone(), vec![0u8; 100])
        .await
        .expect("publish");
    for reader in readers {
        assert_eq!(reader.await.unwrap(), 0, "every stream got the record");
    }
    println!();
    println!(
        "Gateway memory per idle Subscribe stream, (RSS(N) - RSS(0)) / N, all on one topic: {}. One record published reached all {count} streams in {:.0} ms.",
        figures.join(", "),
        start.elapsed().as_secs_f64() * 1e3
    );
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

/// One publish measurement: its rate and what it cost.
struct Run {
    rate: f64,
    /// Gateway CPU seconds per record.
    gateway_cpu: f64,
    /// CPU seconds per record of this process: the direct producer, or the gRPC
    /// client.
    client_cpu: f64,
    /// Machine CPU busy, per cent.
    busy: f64,
}

impl Run {
    /// This run or `other`, whichever was faster.
    fn better(self, other: Option<Run>) -> Run {
        match other {
            Some(other) if other.rate > self.rate => other,
            _ => self,
        }
    }
}

/// Runs `publish` (which returns records/s over `records`) on a new topic, which is
/// deleted afterwards, and measures its cost.
async fn measured<F, Fut>(brokers: &str, gateway: &Gateway, records: usize, publish: F) -> Run
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let topic = new_topic(brokers).await;
    let (m, own, cpu) = (machine(), own_cpu(), gateway.cpu());
    let rate = publish(topic.clone()).await;
    let run = Run {
        rate,
        gateway_cpu: gateway.cpu().saturating_sub(cpu).as_secs_f64() / records as f64,
        client_cpu: (own_cpu() - own).as_secs_f64() / records as f64,
        busy: busy_since(m),
    };
    drop_topic(brokers, &topic).await;
    run
}

/// Records/s of the direct producer with `window` records in flight.
async fn direct_throughput(
    direct: &FutureProducer,
    topic: &str,
    size: usize,
    records: usize,
    window: usize,
) -> f64 {
    let payload = vec![0u8; size];
    let start = Instant::now();
    let mut in_flight: FuturesUnordered<rdkafka::producer::DeliveryFuture> =
        FuturesUnordered::new();
    for _ in 0..records {
        if in_flight.len() >= window {
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

/// Records/s of the direct producer sending batches of 100 records, each batch
/// done when all its records are acknowledged (what a batched Publish call
/// waits for), `window` records (in whole batches) in flight.
async fn direct_batched_throughput(
    direct: &FutureProducer,
    topic: &str,
    size: usize,
    records: usize,
    window: usize,
) -> f64 {
    let payload = vec![0u8; size];
    let start = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for _ in 0..records / 100 {
        if in_flight.len() >= window / 100 {
            in_flight.next().await.unwrap();
        }
        let batch: Vec<_> = (0..100)
            .map(|_| {
                let record = FutureRecord::<(), _>::to(topic).payload(&payload[..]);
                direct
                    .send_result(record)
                    .map_err(|(e, _)| e)
                    .expect("enqueued")
            })
            .collect();
        in_flight.push(async move {
            for done in futures::future::join_all(batch).await {
                done.expect("delivery future").expect("delivered");
            }
        });
    }
    while in_flight.next().await.is_some() {}
    records as f64 / start.elapsed().as_secs_f64()
}

/// Records/s through batched Publish calls of 100 records, `window` records (in
/// whole calls) in flight.
async fn batched_publish(
    channel: &Channel,
    topic: &str,
    size: usize,
    records: usize,
    window: usize,
) -> f64 {
    let batch: Vec<_> = (0..100)
        .map(|_| proto::Record {
            value: Some(vec![0u8; size].into()),
            ..Default::default()
        })
        .collect();
    let start = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for _ in 0..records / 100 {
        if in_flight.len() >= window / 100 {
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
async fn publish_stream(
    channel: &Channel,
    topic: &str,
    size: usize,
    records: usize,
    window: usize,
) -> f64 {
    let value: bytes::Bytes = vec![0u8; size].into();
    let topic = topic.to_string();
    // The client keeps `window` records unanswered; the gateway's own bound
    // (--publish-stream-in-flight) is set above the largest window. Requests are
    // made as the stream is polled, each once a slot is free.
    let slots = Arc::new(tokio::sync::Semaphore::new(window));
    let requests = futures::stream::unfold(0, {
        let slots = slots.clone();
        move |i| {
            // The topic goes with the first request only.
            let topic = if i == 0 { topic.clone() } else { String::new() };
            let (slots, value) = (slots.clone(), value.clone());
            async move {
                if i == records {
                    return None;
                }
                slots.acquire().await.unwrap().forget();
                let request = proto::PublishStreamRequest {
                    topic,
                    record: Some(proto::Record {
                        value: Some(value),
                        ..Default::default()
                    }),
                    correlation_id: String::new(),
                };
                Some((request, i + 1))
            }
        }
    });
    let start = Instant::now();
    let mut client = PublisherServiceClient::new(channel.clone());
    let mut answers = client
        .publish_stream(requests)
        .await
        .expect("stream")
        .into_inner();
    let mut acked = 0;
    while acked < records {
        let answer = answers.message().await.expect("answers").expect("open");
        match answer.result {
            Some(Outcome::Ack(_)) => acked += 1,
            other => panic!("record failed during the benchmark: {other:?}"),
        }
        slots.add_permits(1);
    }
    records as f64 / start.elapsed().as_secs_f64()
}

/// A direct consumer of partition 0 of `topic` from its beginning, with the fetch
/// settings of the gateway's consumers.
fn direct_consumer(brokers: &str, topic: &str) -> rdkafka::consumer::StreamConsumer {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-direct")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string())
        // As the gateway's consumers: librdkafka's 1 s default stalls a consumer
        // whose read-ahead one fetch overfilled.
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("direct consumer");
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    consumer
}

/// How a drain of `records` went: the wait for the first record (consumer set-up
/// and first fetch), then the rate from the first record to the last.
#[derive(Clone, Copy)]
struct Drain {
    first: Duration,
    rate: f64,
}

impl Drain {
    /// `later` records came after the first arrival, at `first`.
    fn measure(later: usize, start: Instant, first: Instant) -> Drain {
        Drain {
            first: first - start,
            rate: later as f64 / first.elapsed().as_secs_f64(),
        }
    }
}

/// A direct consumer reading `records` from the start of `topic`.
async fn direct_consume(brokers: &str, topic: &str, records: usize) -> Drain {
    let consumer = direct_consumer(brokers, topic);
    let start = Instant::now();
    consumer.recv().await.expect("record");
    let first = Instant::now();
    for _ in 1..records {
        consumer.recv().await.expect("record");
    }
    Drain::measure(records - 1, start, first)
}

/// One Subscribe stream reading `records` from the start of `topic`: from
/// EARLIEST (a consumer of its own) or, `shared`, from offset 0 (a shared feed).
async fn subscribe_drain(
    channel: &Channel,
    topic: &str,
    records: usize,
    batch: i32,
    shared: bool,
) -> Drain {
    let mut client =
        proto::subscriber_service_client::SubscriberServiceClient::new(channel.clone());
    let request = if shared {
        proto::SubscribeRequest {
            topics: vec![topic.into()],
            start: proto::StartPosition::Offset as i32,
            start_offsets: vec![proto::PartitionOffset {
                topic: topic.into(),
                partition: 0,
                offset: 0,
            }],
            max_batch_records: batch,
            ..Default::default()
        }
    } else {
        proto::SubscribeRequest {
            topics: vec![topic.into()],
            start: proto::StartPosition::Earliest as i32,
            max_batch_records: batch,
            ..Default::default()
        }
    };
    let start = Instant::now();
    let mut stream = client
        .subscribe(request)
        .await
        .expect("subscribe")
        .into_inner();
    let mut seen = 0;
    let mut first = None;
    while seen < records {
        match stream.message().await.expect("stream").expect("open").event {
            Some(proto::subscribe_response::Event::Record(_)) => seen += 1,
            Some(proto::subscribe_response::Event::Records(batch)) => seen += batch.records.len(),
            _ => {}
        }
        if seen > 0 && first.is_none() {
            first = Some((Instant::now(), seen));
        }
    }
    let (first, seen_then) = first.expect("records came");
    Drain::measure(records - seen_then, start, first)
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

/// Deletes a topic a scenario is done with: the broker keeps records in memory,
/// and gigabytes of old topics slowed later scenarios down.
async fn drop_topic(brokers: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin");
    match admin
        .delete_topics(&[topic], &AdminOptions::new())
        .await
        .as_deref()
    {
        Ok([Ok(_)]) => {}
        Ok(results) => eprintln!("topic {topic} not deleted: {results:?}"),
        Err(err) => eprintln!("topic {topic} not deleted: {err}"),
    }
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
            .args([
                "--publish-stream-in-flight",
                &IN_FLIGHT.iter().max().unwrap().to_string(),
            ])
            .args([
                "--kafka-config",
                &format!("fetch.wait.max.ms={FETCH_WAIT_MS}"),
            ])
            .env("KAFKA_GATEWAY_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start the gateway");
        Gateway { child, port }
    }

    async fn channel(&self) -> Channel {
        for _ in 0..600 {
            // A client's receive window bounds a Subscribe stream's throughput; gRPC
            // clients commonly raise HTTP/2's 64 KiB default.
            let endpoint = Channel::from_shared(format!("http://127.0.0.1:{}", self.port))
                .unwrap()
                .initial_stream_window_size(Some(4 * 1024 * 1024))
                .initial_connection_window_size(Some(8 * 1024 * 1024));
            if let Ok(channel) = endpoint.connect().await {
                return channel;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway did not listen");
    }

    /// A connection with HTTP/2's default windows, as most clients open.
    async fn plain_channel(&self) -> Channel {
        Channel::from_shared(format!("http://127.0.0.1:{}", self.port))
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }

    fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// CPU time (user + system) the gateway process used so far.
    fn cpu(&self) -> Duration {
        cpu_of(&self.child.id().to_string())
    }

    fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
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

/// CPU time (user + system) of this process, the load generator.
fn own_cpu() -> Duration {
    cpu_of("self")
}

/// Busy and total jiffies of the whole machine.
fn machine() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let jiffies: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    let total: u64 = jiffies.iter().sum();
    // idle and iowait
    (total - jiffies[3] - jiffies[4], total)
}

/// Percent of the machine's CPU busy since `then`.
fn busy_since(then: (u64, u64)) -> f64 {
    let now = machine();
    (now.0 - then.0) as f64 * 100.0 / (now.1 - then.1).max(1) as f64
}

/// CPU time (user + system) of process `pid` (or "self") so far.
fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / 100.0)
}
