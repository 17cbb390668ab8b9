//! Batched Publish and PublishStream throughput with records in flight, against
//! the direct producer with the same window, refilled record by record or in
//! batches.

use crate::{
    measure::{busy_since, machine, own_cpu},
    new_topic, row, throughput, wanted, Settings, IN_FLIGHT,
};
use futures::{stream::FuturesUnordered, StreamExt};
use kafka_gateway::transport::proto::{
    self, publish_stream_response::Result as Outcome,
    publisher_service_client::PublisherServiceClient,
};
use kafka_gateway_test_kit::{delete_topic_on, GatewayProcess};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::{sync::Arc, time::Instant};
use tonic::transport::Channel;

/// The publish rows of the table; returns the machine's CPU busy and the CPU per
/// record outside the gateway of each case, for the notes below it.
pub async fn run(
    settings: &Settings,
    gateway: &GatewayProcess,
    channel: &Channel,
    direct: &FutureProducer,
) -> (Vec<String>, Vec<String>) {
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
        // Each path twice, in turns, each run on a topic of its own: the better run
        // of each counts, so a broker that slows down during the case favours no
        // path.
        let (mut direct_run, mut direct_batched_run, mut batched_run, mut stream_run) =
            (None, None, None, None);
        for _ in 0..2 {
            let run = measured(brokers, gateway, records, |topic| async move {
                direct_throughput(direct, &topic, size, records, window).await
            })
            .await;
            direct_run = Some(run.better(direct_run));
            let run = measured(brokers, gateway, records, |topic| async move {
                direct_batched_throughput(direct, &topic, size, records, window).await
            })
            .await;
            direct_batched_run = Some(run.better(direct_batched_run));
            let run = measured(brokers, gateway, records, |topic| async move {
                batched_publish(channel, &topic, size, records, window).await
            })
            .await;
            batched_run = Some(run.better(batched_run));
            let run = measured(brokers, gateway, records, |topic| async move {
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
    (busy, outside)
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
async fn measured<F, Fut>(
    brokers: &str,
    gateway: &GatewayProcess,
    records: usize,
    publish: F,
) -> Run
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
    delete_topic_on(brokers, &topic).await;
    run
}

/// Records/s of the direct producer with `window` records in flight.
pub async fn direct_throughput(
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
