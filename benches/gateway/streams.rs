//! Many idle Subscribe streams: the gateway's memory per stream, and one record
//! reaching them all.

use crate::{measure::rss_kib, new_topic, publish_one, Settings};
use kafka_gateway::transport::proto::{self, publisher_service_client::PublisherServiceClient};
use kafka_gateway_test_kit::{connect, GatewayProcess};
use std::time::{Duration, Instant};

/// Gateway memory per idle Subscribe stream (all reading one topic's live feed),
/// then one record delivered to every stream.
pub async fn run(settings: &Settings, gateway: &GatewayProcess, quick: bool) {
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
                channels.push(connect(gateway.addr()).await);
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
        let rss = rss_kib(gateway);
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
    let mut client = PublisherServiceClient::new(connect(gateway.addr()).await);
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
