//! Fan-out: Subscribe streams without a group that read the same partitions share
//! one Kafka consumer; each keeps its own position; a slow one is dropped with
//! RESOURCE_EXHAUSTED without losing records silently or slowing the others.

use kafka_gateway::transport::proto::{self, StartPosition};
use kafka_gateway_test_kit::*;
use tonic::Code;

#[tokio::test]
async fn streams_of_the_same_partitions_share_one_consumer() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(2).await;
    let mut publisher = gw.publisher().await;
    let mut subscriber = gw.subscriber().await;
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(
            subscribe(
                &mut subscriber,
                partitions_request(&topic, StartPosition::Latest),
            )
            .await,
        );
    }
    assert_eq!(gw.consumers.shared_streams(), 20);
    assert_eq!(gw.consumers.live_consumers(), 1, "one shared consumer");

    let records: Vec<_> = (0..10).map(|i| record_at(i % 2, &i.to_string())).collect();
    publish(&mut publisher, &topic, records).await;
    for (i, stream) in streams.iter_mut().enumerate() {
        let got = next_records(stream, 10).await;
        for partition in 0..2 {
            let values: Vec<String> = got
                .iter()
                .filter(|r| r.partition == partition)
                .map(value_of)
                .collect();
            let expected: Vec<String> = (0..10)
                .filter(|i| i % 2 == partition)
                .map(|i| i.to_string())
                .collect();
            assert_eq!(values, expected, "partition {partition} in order");
        }
        if i < 2 {
            assert_no_more_records(stream).await;
        }
    }

    drop(streams);
    // The shared consumer stops with its last stream.
    wait_until_no_consumers(&gw).await;
    assert_eq!(gw.consumers.shared_streams(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_starting_inside_the_feed_joins_it_at_its_own_offset() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(1).await;
    let mut publisher = gw.publisher().await;
    let mut subscriber = gw.subscriber().await;
    let mut first = subscribe(
        &mut subscriber,
        partitions_request(&topic, StartPosition::Latest),
    )
    .await;
    let results = publish(&mut publisher, &topic, numbered(5)).await;
    // The feed holds these once the first stream has them.
    assert_eq!(next_records(&mut first, 5).await.len(), 5);

    let mut second = subscribe(&mut subscriber, offset_request(&topic, results[2].offset)).await;
    assert_eq!(gw.consumers.live_consumers(), 1, "joined the shared feed");
    publish(&mut publisher, &topic, vec![record(None, "5")]).await;
    let values: Vec<String> = next_records(&mut second, 3)
        .await
        .iter()
        .map(value_of)
        .collect();
    assert_eq!(values, ["2", "3", "4"]);
    assert_eq!(value_of(&next_record(&mut second).await), "5");
    assert_eq!(value_of(&next_record(&mut first).await), "5");
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_starting_before_the_feed_reads_with_its_own_consumer() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(1).await;
    let mut publisher = gw.publisher().await;
    let mut subscriber = gw.subscriber().await;
    let early = publish(&mut publisher, &topic, numbered(3)).await;
    let mut live = subscribe(
        &mut subscriber,
        partitions_request(&topic, StartPosition::Latest),
    )
    .await;
    let mut replay = subscribe(&mut subscriber, offset_request(&topic, early[0].offset)).await;
    assert_eq!(
        gw.consumers.live_consumers(),
        2,
        "the shared one and its own"
    );
    publish(&mut publisher, &topic, vec![record(None, "3")]).await;
    let values: Vec<String> = next_records(&mut replay, 4)
        .await
        .iter()
        .map(value_of)
        .collect();
    assert_eq!(values, ["0", "1", "2", "3"]);
    assert_eq!(value_of(&next_record(&mut live).await), "3");
    gw.stop().await;
}

#[tokio::test]
async fn a_slow_stream_ends_with_resource_exhausted_and_the_others_get_everything() {
    // A small feed (a few batches), so that a reader that stops reading falls out
    // of it soon. nisshi answers a fetch only at fetch.wait.max.ms even when records
    // arrive earlier (Kafka answers at once), so the test shortens that wait.
    let gw = TestGateway::start(&[
        "--fanout-buffer-bytes",
        "400000",
        "--kafka-config",
        "fetch.wait.max.ms=10",
    ])
    .await;
    let topic = topic(1).await;
    let mut publisher = gw.publisher().await;
    // Separate connections: the slow stream's unread data does not hold up the
    // fast one's connection window.
    let mut fast = subscribe(
        &mut gw.subscriber().await,
        partitions_request(&topic, StartPosition::Latest),
    )
    .await;
    let mut slow = subscribe(
        &mut gw.subscriber().await,
        partitions_request(&topic, StartPosition::Latest),
    )
    .await;

    // 8 MB: far more than the feed, the HTTP/2 windows and the buffers in between.
    // The fast stream reads along, and each batch waits until it has the one
    // before, so only the slow stream can fall out of the feed.
    let total = 8_000;
    let batch = 100;
    let (progress, mut read) = tokio::sync::watch::channel(0usize);
    let fast_reader = tokio::spawn(async move {
        for expected in 0..total {
            let record = next_record(&mut fast).await;
            assert_eq!(
                key_of(&record),
                expected.to_string(),
                "fast stream in order"
            );
            progress.send_replace(expected + 1);
        }
    });
    let value = "x".repeat(1000);
    for first in (0..total).step_by(batch) {
        let records = (first..first + batch)
            .map(|i| record(Some(&i.to_string()), &value))
            .collect();
        publish(&mut publisher, &topic, records).await;
        tokio::time::timeout(PATIENCE, read.wait_for(|n| *n >= first + batch))
            .await
            .expect("the fast stream keeps up")
            .unwrap();
    }
    fast_reader.await.unwrap();

    // The slow stream gets a gapless prefix, then the error; never a gap.
    let (next, status) = gapless_prefix_then_error(&mut slow).await;
    assert!(
        next < total,
        "the slow stream was dropped, not served in full"
    );
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("--fanout-buffer-bytes"),
        "{}",
        status.message()
    );
    // Where to subscribe again is in the details, not only in the message.
    let details = tonic_types::StatusExt::get_error_details(&status);
    let info = details.error_info().expect("an ErrorInfo");
    assert_eq!(info.reason, "FELL_BEHIND", "{info:?}");
    assert_eq!(info.metadata["topic"], topic);
    let resume: i64 = info.metadata["resume_offset"].parse().unwrap();
    assert!(
        resume > next as i64,
        "records from {next} were lost, not kept: {info:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn shared_streams_past_their_cap_are_resource_exhausted() {
    let gw = TestGateway::start(&["--max-shared-streams", "1"]).await;
    let topic = topic(1).await;
    let mut subscriber = gw.subscriber().await;
    let first = subscribe(
        &mut subscriber,
        partitions_request(&topic, StartPosition::Latest),
    )
    .await;
    let status = subscriber
        .subscribe(partitions_request(&topic, StartPosition::Latest))
        .await
        .expect_err("past the cap");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("--max-shared-streams"),
        "{status:?}"
    );
    drop(first);
    wait_until_no_consumers(&gw).await;
    subscribe(
        &mut subscriber,
        partitions_request(&topic, StartPosition::Latest),
    )
    .await;
    gw.stop().await;
}

fn offset_request(topic: &str, offset: i64) -> proto::SubscribeRequest {
    proto::SubscribeRequest {
        topics: vec![topic.into()],
        start: StartPosition::Offset as i32,
        start_offsets: vec![proto::PartitionOffset {
            topic: topic.into(),
            partition: 0,
            offset,
        }],
        ..Default::default()
    }
}

/// Reads a stream whose records are keyed 0, 1, 2... until it ends with an error;
/// asserts that no record was skipped, and returns how many came and the status.
async fn gapless_prefix_then_error(
    stream: &mut tonic::Streaming<proto::SubscribeResponse>,
) -> (usize, tonic::Status) {
    let mut next = 0;
    loop {
        match tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("the stream ends within PATIENCE")
        {
            Ok(Some(proto::SubscribeResponse {
                event: Some(proto::subscribe_response::Event::Record(record)),
            })) => {
                assert_eq!(key_of(&record), next.to_string(), "no record skipped");
                next += 1;
            }
            Ok(other) => panic!("expected a record or an error, got {other:?}"),
            Err(status) => return (next, status),
        }
    }
}

fn key_of(record: &proto::ConsumedRecord) -> String {
    String::from_utf8(record.key.clone().unwrap_or_default().to_vec()).unwrap()
}

#[tokio::test]
async fn a_feed_whose_position_retention_deleted_ends_only_its_own_streams() {
    // A small read-ahead in librdkafka too: records it already fetched are still
    // delivered after retention deleted them, as by any Kafka consumer.
    let gw = TestGateway::start(&[
        "--fanout-buffer-bytes",
        "100000",
        "--kafka-config",
        "fetch.wait.max.ms=10",
        "--kafka-config",
        "queued.max.messages.kbytes=1024",
        "--kafka-config",
        "queued.min.messages=100",
    ])
    .await;
    let (deleted, kept) = (topic(1).await, topic(1).await);
    let mut publisher = gw.publisher().await;
    let mut subscriber = gw.subscriber().await;
    let mut stalled = subscribe(
        &mut subscriber,
        partitions_request(&deleted, StartPosition::Latest),
    )
    .await;
    let mut other = subscribe(
        &mut subscriber,
        partitions_request(&kept, StartPosition::Latest),
    )
    .await;

    // More than the HTTP/2 windows, the feed and librdkafka's read-ahead take: the
    // unread stream's feed fills and the shared consumer stops fetching its
    // partition.
    let value = "x".repeat(1000);
    let mut high = 0;
    for first in (0..20_000).step_by(500) {
        let records = (first..first + 500)
            .map(|i| record(Some(&i.to_string()), &value))
            .collect();
        high = publish(&mut publisher, &deleted, records)
            .await
            .last()
            .unwrap()
            .offset
            + 1;
    }
    // Retention, as DeleteRecords: everything written so far goes.
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .create()
            .unwrap();
    let mut upto = rdkafka::TopicPartitionList::new();
    upto.add_partition_offset(&deleted, 0, rdkafka::Offset::Offset(high))
        .unwrap();
    admin
        .delete_records(&upto, &rdkafka::admin::AdminOptions::new())
        .await
        .expect("delete records");

    // The stalled stream: what it was sent, without a gap, then OUT_OF_RANGE.
    let (next, status) = gapless_prefix_then_error(&mut stalled).await;
    assert!(next < 20_000);
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");

    // The other topic's stream, on the same shared consumer, goes on.
    publish(&mut publisher, &kept, vec![record(None, "still here")]).await;
    assert_eq!(value_of(&next_record(&mut other).await), "still here");
    gw.stop().await;
}

#[tokio::test]
async fn past_the_shared_partitions_limit_a_stream_reads_with_its_own_consumer() {
    let gw = TestGateway::start(&["--max-shared-partitions", "1"]).await;
    let topic = topic(2).await;
    let mut publisher = gw.publisher().await;
    let mut subscriber = gw.subscriber().await;
    let only = |partition: i32| proto::SubscribeRequest {
        partitions: vec![partition],
        ..partitions_request(&topic, StartPosition::Latest)
    };
    let mut first = subscribe(&mut subscriber, only(0)).await;
    let mut second = subscribe(&mut subscriber, only(1)).await;
    assert_eq!(
        gw.consumers.shared_streams(),
        1,
        "one feed, one stream on it"
    );
    assert_eq!(
        gw.consumers.live_consumers(),
        2,
        "the shared consumer and the second stream's own"
    );
    publish(
        &mut publisher,
        &topic,
        vec![record_at(0, "to 0"), record_at(1, "to 1")],
    )
    .await;
    assert_eq!(value_of(&next_record(&mut first).await), "to 0");
    assert_eq!(value_of(&next_record(&mut second).await), "to 1");
    gw.stop().await;
}
