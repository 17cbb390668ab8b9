//! End-to-end latency at a fixed offered rate, publish to Subscribe, against
//! producer to consumer.

use crate::{new_topic, publish_one, subscribe::direct_consumer, Settings};
use kafka_gateway::transport::proto::{self, publisher_service_client::PublisherServiceClient};
use kafka_gateway_test_kit::GatewayProcess;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// End-to-end latency at a fixed offered rate (open loop: each record is sent at
/// its scheduled time whatever the earlier ones did, and its latency counts from
/// that time), publish to Subscribe, against producer to consumer.
pub async fn run(
    settings: &Settings,
    gateway: &GatewayProcess,
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
