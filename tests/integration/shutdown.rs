//! Graceful shutdown: in-flight publishes finish, streams end with a status,
//! delivered offsets are committed.

use kafka_gateway::transport::proto::{self, StartPosition};
use kafka_gateway_test_kit::*;
use std::time::Duration;
use tonic::Code;

#[tokio::test]
async fn shutdown_finishes_publishes_ends_streams_and_commits() {
    // A long linger keeps the publish in flight while shutdown starts.
    let gw = TestGateway::start(&["--linger", "1s"]).await;
    let topic = topic(1).await;
    let group = unique("g");
    let mut publisher = gw.publisher().await;
    publish(
        &mut publisher,
        &topic,
        (0..5).map(|i| record(None, &format!("old-{i}"))).collect(),
    )
    .await;

    let mut subscriber = gw.subscriber().await;
    let mut stream = subscribe(
        &mut subscriber,
        group_request(&topic, &group, StartPosition::Earliest),
    )
    .await;
    next_records(&mut stream, 5).await;

    let mut in_flight_client = publisher.clone();
    let topic_for_publish = topic.clone();
    let in_flight = tokio::spawn(async move {
        publish(
            &mut in_flight_client,
            &topic_for_publish,
            vec![record(None, "in-flight")],
        )
        .await
    });
    // Stop once the record is queued in the producer, not yet acknowledged.
    tokio::time::timeout(PATIENCE, async {
        while gw.producer.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the publish reaches the producer");
    gw.stop().await;

    let results = in_flight.await.expect("in-flight publish answered");
    assert_eq!(results.len(), 1, "the in-flight publish was acknowledged");
    // The stream ends with a status. The in-flight record normally reaches the
    // broker after the stream ended (linger); if it came first, it was delivered.
    let mut got_in_flight = false;
    let status = loop {
        match tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("stream ends")
        {
            Err(status) => break status,
            Ok(Some(event)) => {
                let Some(proto::subscribe_response::Event::Record(record)) = event.event else {
                    continue; // assignment changes
                };
                assert_eq!(value_of(&record), "in-flight", "an old record came again");
                got_in_flight = true;
            }
            Ok(None) => panic!("stream ended without a status"),
        }
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("shutting down"), "{status:?}");
    let details = tonic_types::StatusExt::get_error_details(&status);
    assert_eq!(
        details.error_info().map(|info| info.reason.as_str()),
        Some("SHUTTING_DOWN"),
        "{status:?}"
    );
    assert!(
        details.retry_info().is_some(),
        "another instance takes it: {status:?}"
    );

    // A new gateway: the group resumes after everything delivered before shutdown.
    let gw = TestGateway::start(&[]).await;
    let mut subscriber = gw.subscriber().await;
    let mut stream = subscribe(
        &mut subscriber,
        group_request(&topic, &group, StartPosition::Earliest),
    )
    .await;
    if !got_in_flight {
        let first = next_record(&mut stream).await;
        assert_eq!(
            value_of(&first),
            "in-flight",
            "delivered records were not committed at shutdown"
        );
    }
    assert_no_more_records(&mut stream).await;
    gw.stop().await;
}

/// Every value in `topic` (from partitions `0..partitions`), read directly.
fn values_in(topic: &str, partitions: i32) -> Vec<String> {
    use rdkafka::{
        consumer::{BaseConsumer, Consumer},
        ClientConfig, Message, Offset, TopicPartitionList,
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    let mut ends = Vec::new();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, PATIENCE)
            .unwrap();
        ends.push(high);
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut next = vec![0i64; partitions as usize];
    let mut values = Vec::new();
    let started = std::time::Instant::now();
    while next.iter().zip(&ends).any(|(n, end)| n < end) {
        assert!(
            started.elapsed() < PATIENCE,
            "reading {topic} took too long"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            next[message.partition() as usize] = message.offset() + 1;
            values.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
        }
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_every_written_record_while_clients_keep_sending() {
    use kafka_gateway::transport::proto::publisher_service_client::PublisherServiceClient;
    use std::{
        collections::HashSet,
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
    };
    // Clients on connections of their own, each sending as fast as gRPC lets it
    // when the gateway gets SIGTERM. Four rounds, since the race is one of timing
    // (the gateway before its lingering close failed about one round in six).
    const STREAMS: usize = 4;
    for round in 0..4 {
        let gateway = GatewayProcess::spawn(gateway_binary!(), &brokers(), &[]);
        let topic = topic(2).await;
        let mut clients = Vec::new();
        let mut progress = Vec::new();
        for stream in 0..STREAMS {
            let answered = Arc::new(AtomicUsize::new(0));
            progress.push(answered.clone());
            let mut client = PublisherServiceClient::new(gateway.channel().await);
            let topic = topic.clone();
            clients.push(tokio::spawn(async move {
                let requests = tokio_stream::iter((0..).map(move |i: u64| {
                    let id = format!("{round}-{stream}-{i}");
                    proto::PublishStreamRequest {
                        topic: topic.clone(),
                        record: Some(record(None, &id)),
                        correlation_id: id,
                    }
                }));
                let mut answers = client
                    .publish_stream(requests)
                    .await
                    .expect("the stream opens")
                    .into_inner();
                let mut ids = HashSet::new();
                let status = loop {
                    match tokio::time::timeout(PATIENCE, answers.message())
                        .await
                        .expect("answers keep coming")
                    {
                        Ok(Some(answer)) => {
                            assert!(ids.insert(answer.correlation_id), "answered twice");
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(None) => panic!("the stream ended OK while its client was sending"),
                        Err(status) => break status,
                    }
                };
                (ids, status)
            }));
        }
        tokio::time::timeout(PATIENCE, async {
            while progress.iter().any(|p| p.load(Ordering::Relaxed) < 2_000) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("every stream is under way");
        gateway.signal("TERM");
        let mut answered = HashSet::new();
        for client in clients {
            let (ids, status) = client.await.unwrap();
            assert_eq!(
                status.code(),
                Code::Unavailable,
                "round {round}: the stream ended without the gateway's status: {status:?}"
            );
            assert!(
                status.message().contains("shutting down"),
                "round {round}: the stream ended without the gateway's status: {status:?}"
            );
            answered.extend(ids);
        }
        let unanswered: Vec<_> = values_in(&topic, 2)
            .into_iter()
            .filter(|id| !answered.contains(id))
            .collect();
        assert!(
            unanswered.is_empty(),
            "round {round}: {} records written but never answered, e.g. {:?}",
            unanswered.len(),
            &unanswered[..unanswered.len().min(5)]
        );
    }
}
