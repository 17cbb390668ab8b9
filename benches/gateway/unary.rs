//! Unary Publish of one small record at several concurrencies, in a closed loop:
//! calls/s and latency against the direct producer sending one record at a time.

use crate::{new_topic, publish_one, row, wanted, Settings};
use kafka_gateway::transport::proto::publisher_service_client::PublisherServiceClient;
use kafka_gateway_test_kit::GatewayProcess;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tonic::transport::Channel;

/// The unary rows of the table.
pub async fn run(
    settings: &Settings,
    gateway: &GatewayProcess,
    channel: &Channel,
    direct: &FutureProducer,
) {
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
