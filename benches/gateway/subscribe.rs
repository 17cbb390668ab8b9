//! Subscribe drain throughput through one stream, one record per event, in
//! batches, and through a shared feed, against a direct consumer.

use crate::{
    measure::{busy_since, machine, own_cpu},
    new_topic,
    publish::direct_throughput,
    row, throughput, Settings, FETCH_WAIT_MS,
};
use kafka_gateway::transport::proto;
use kafka_gateway_test_kit::GatewayProcess;
use rdkafka::{producer::FutureProducer, ClientConfig};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Subscribe: the same records drained through one stream and one direct consumer.
pub async fn run(
    settings: &Settings,
    gateway: &GatewayProcess,
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

/// A direct consumer of partition 0 of `topic` from its beginning, with the fetch
/// settings of the gateway's consumers.
pub fn direct_consumer(brokers: &str, topic: &str) -> rdkafka::consumer::StreamConsumer {
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
