//! PublishStream backpressure with a stalled broker: clients sending records of any
//! size as fast as gRPC lets them are held back by flow control, the connection
//! stays up and carries other calls, and every record gets one answer once the
//! broker is back.

use kafka_gateway::transport::proto::{
    self, publish_stream_response::Result as Outcome,
    publisher_service_client::PublisherServiceClient,
    subscriber_service_client::SubscriberServiceClient, StartPosition,
};
use kafka_gateway_test_kit::*;
use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

/// A stream of `count` records of `size` bytes, made as the client pulls them;
/// `pulled` counts how many it has taken.
fn records(
    topic: &str,
    name: &'static str,
    size: usize,
    count: usize,
    pulled: Arc<AtomicUsize>,
) -> impl tokio_stream::Stream<Item = proto::PublishStreamRequest> {
    let topic = topic.to_string();
    let value = bytes::Bytes::from(vec![b'x'; size]);
    tokio_stream::iter((0..count).map(move |i| {
        pulled.fetch_add(1, Ordering::Relaxed);
        proto::PublishStreamRequest {
            // Only the first names the topic, as a client sending small records
            // would do: the stream's later requests are a few bytes each.
            topic: if i == 0 { topic.clone() } else { String::new() },
            record: Some(proto::Record {
                value: Some(value.clone()),
                ..Default::default()
            }),
            correlation_id: format!("{name}-{i}"),
        }
    }))
}

/// Reads every answer of a stream until it ends; returns the acknowledged
/// (partition, offset) by correlation id and the end status (None for OK).
async fn read_answers(
    mut answers: tonic::Streaming<proto::PublishStreamResponse>,
) -> (HashMap<String, (i32, i64)>, Option<tonic::Status>) {
    let mut acked = HashMap::new();
    loop {
        let next = tokio::time::timeout(PATIENCE, answers.message())
            .await
            .expect("answers keep coming");
        match next {
            Ok(Some(answer)) => {
                let position = match answer.result.expect("a result") {
                    Outcome::Ack(ack) => (ack.partition, ack.offset),
                    Outcome::Error(error) => {
                        panic!("record {} failed: {error:?}", answer.correlation_id)
                    }
                };
                let previous = acked.insert(answer.correlation_id.clone(), position);
                assert!(
                    previous.is_none(),
                    "answered twice: {}",
                    answer.correlation_id
                );
            }
            Ok(None) => return (acked, None),
            Err(status) => return (acked, Some(status)),
        }
    }
}

/// Waits until none of `counters` has moved for a second (bounded by PATIENCE):
/// the clients are held back, or are slower than that.
async fn until_still(counters: &[Arc<AtomicUsize>]) -> Vec<usize> {
    let read = || {
        counters
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect::<Vec<_>>()
    };
    let started = tokio::time::Instant::now();
    let mut last = read();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = read();
        if now == last || started.elapsed() > PATIENCE {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_records_of_any_size_are_held_back_while_the_broker_stalls() {
    // Each stream sends far more than its records in flight and windows hold, so
    // only backpressure can stop its client, and a gateway that buffered instead
    // would hold about 90 MiB.
    const STREAMS: [(&str, usize, usize); 5] = [
        ("1B", 1, 100_000),
        ("30B", 30, 100_000),
        ("300B", 300, 20_000),
        ("16KiB", 16 * 1024, 2_000),
        // Just under 1 MiB: Kafka takes batches of up to 1 MiB by default.
        ("1MiB", 1023 * 1024, 48),
    ];
    let broker = OwnBroker::start();
    let gateway = GatewayProcess::spawn(
        gateway_binary!(),
        &broker.address(),
        &["--producer-queue-bytes", "16777216"],
    );
    let topic = unique("stall");
    let other = unique("stall-other");
    broker.create_topic(&topic, 2).await;
    broker.create_topic(&other, 1).await;
    // One connection for everything.
    let channel = gateway.channel().await;
    let mut publisher = PublisherServiceClient::new(channel.clone());
    // The topics' metadata is cached before the broker stalls.
    publish(&mut publisher, &topic, vec![record(None, "warm")]).await;
    publish(&mut publisher, &other, vec![record(None, "warm")]).await;
    let before = rss(gateway.child.id());

    broker.pause();
    let mut readers = Vec::new();
    let mut pulled = Vec::new();
    for (name, size, count) in STREAMS {
        let counter = Arc::new(AtomicUsize::new(0));
        pulled.push(counter.clone());
        let mut client = PublisherServiceClient::new(channel.clone())
            .max_decoding_message_size(4 << 20)
            .max_encoding_message_size(4 << 20);
        let requests = records(&topic, name, size, count, counter);
        readers.push(tokio::spawn(async move {
            let answers = client
                .publish_stream(requests)
                .await
                .expect("the stream opens")
                .into_inner();
            read_answers(answers).await
        }));
    }
    let held = until_still(&pulled).await;
    for ((name, _, count), taken) in STREAMS.iter().zip(&held) {
        assert!(
            taken < count,
            "the {name} stream's client sent all {count} records to a stalled broker: nothing held it back"
        );
    }
    let grown = rss(gateway.child.id()).saturating_sub(before);
    assert!(
        grown < 48 << 20,
        "the gateway grew by {} MiB while holding the streams back",
        grown >> 20
    );

    // The same connection carries other calls meanwhile.
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("a health check on the connection of the stalled streams");
    assert_eq!(health.into_inner().status, 1, "SERVING");
    let unary = {
        let mut publisher = publisher.clone();
        let other = other.clone();
        tokio::spawn(
            async move { publish(&mut publisher, &other, vec![record(None, "during")]).await },
        )
    };
    let mut subscriber = SubscriberServiceClient::new(channel.clone());
    let subscribed = tokio::spawn(async move {
        let mut stream = subscribe(
            &mut subscriber,
            partitions_request(&other, StartPosition::Earliest),
        )
        .await;
        next_records(&mut stream, 2).await
    });

    broker.resume();
    let published = unary.await.unwrap();
    assert_eq!(published.len(), 1);
    let values: Vec<_> = subscribed.await.unwrap().iter().map(value_of).collect();
    assert_eq!(values, ["warm", "during"]);
    let mut offsets = HashSet::new();
    for (reader, (name, _, count)) in readers.into_iter().zip(STREAMS) {
        let (acked, status) = reader.await.unwrap();
        assert!(status.is_none(), "the {name} stream ended with {status:?}");
        assert_eq!(acked.len(), count, "the {name} stream's records answered");
        for position in acked.into_values() {
            assert!(offsets.insert(position), "two records at {position:?}");
        }
    }
}
