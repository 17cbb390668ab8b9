//! Publish and no-group Subscribe against the real broker.

use kafka_gateway::transport::proto::{self, StartPosition};
use kafka_gateway_test_kit::*;
use rdkafka::{
    producer::{FutureProducer, FutureRecord},
    ClientConfig,
};
use std::{collections::HashSet, time::Duration};

#[tokio::test]
async fn a_batch_round_trips_byte_for_byte_with_headers() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(3).await;
    let mut publisher = gw.publisher().await;
    let binary: Vec<u8> = (0..=255u8).collect();
    let records = vec![
        proto::Record {
            key: Some(b"k1".to_vec().into()),
            value: Some(binary.clone().into()),
            headers: vec![
                proto::Header {
                    key: "dup".into(),
                    value: Some(b"first".to_vec().into()),
                },
                proto::Header {
                    key: "dup".into(),
                    value: Some(b"second".to_vec().into()),
                },
                proto::Header {
                    key: "null".into(),
                    value: None,
                },
            ],
            partition: Some(2),
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_600_000_000,
                nanos: 123_000_000,
            }),
        },
        proto::Record {
            key: Some(b"k2".to_vec().into()),
            value: None,
            partition: Some(2),
            ..Default::default()
        },
        proto::Record {
            key: None,
            value: Some(b"".to_vec().into()),
            partition: Some(2),
            ..Default::default()
        },
    ];
    let results = publish(&mut publisher, &topic, records.clone()).await;
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|r| r.partition == 2));
    assert_eq!(results[1].offset, results[0].offset + 1);
    assert_eq!(results[2].offset, results[1].offset + 1);
    assert_eq!(results[0].timestamp.unwrap().seconds, 1_600_000_000);

    let mut subscriber = gw.subscriber().await;
    let mut stream = subscribe(
        &mut subscriber,
        partitions_request(&topic, StartPosition::Earliest),
    )
    .await;
    let got = next_records(&mut stream, 3).await;
    for ((sent, result), got) in records.iter().zip(&results).zip(&got) {
        assert_eq!(got.topic, topic);
        assert_eq!(got.partition, result.partition);
        assert_eq!(got.offset, result.offset);
        assert_eq!(got.key, sent.key, "key");
        assert_eq!(got.value, sent.value, "value");
        let headers: Vec<_> = got
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect();
        let expected: Vec<_> = sent
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect();
        assert_eq!(
            headers, expected,
            "headers in order, duplicates and nulls kept"
        );
    }
    let ts = got[0].timestamp.unwrap();
    assert_eq!((ts.seconds, ts.nanos), (1_600_000_000, 123_000_000));
    gw.stop().await;
}

#[tokio::test]
async fn same_key_same_partition_as_a_murmur2_kafka_client() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(6).await;
    let mut publisher = gw.publisher().await;
    let direct: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    let mut partitions_seen = HashSet::new();
    for i in 0..40 {
        let key = format!("customer-{i}");
        let first =
            publish(&mut publisher, &topic, vec![record(Some(&key), "a")]).await[0].partition;
        let again =
            publish(&mut publisher, &topic, vec![record(Some(&key), "b")]).await[0].partition;
        assert_eq!(first, again, "key {key} moved between publishes");
        let (direct_partition, _) = direct
            .send(
                FutureRecord::to(&topic).key(&key).payload("c"),
                Duration::from_secs(30),
            )
            .await
            .map(|d| (d.partition, d.offset))
            .unwrap_or_else(|(e, _)| panic!("direct produce: {e}"));
        assert_eq!(
            first, direct_partition,
            "gateway and a murmur2 Kafka client disagree on key {key}"
        );
        partitions_seen.insert(first);
    }
    assert!(
        partitions_seen.len() > 1,
        "40 keys all hashed to one partition: {partitions_seen:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn latest_sees_only_records_published_after_subscribe() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(2).await;
    let mut publisher = gw.publisher().await;
    for p in 0..2 {
        publish(&mut publisher, &topic, vec![record_at(p, "before")]).await;
    }
    let mut subscriber = gw.subscriber().await;
    let mut stream = subscribe(
        &mut subscriber,
        partitions_request(&topic, StartPosition::Latest),
    )
    .await;
    for p in 0..2 {
        publish(&mut publisher, &topic, vec![record_at(p, "after")]).await;
    }
    let got = next_records(&mut stream, 2).await;
    assert!(got.iter().all(|r| value_of(r) == "after"), "{got:?}");
    assert_eq!(
        got.iter().map(|r| r.partition).collect::<HashSet<_>>(),
        HashSet::from([0, 1])
    );
    assert_no_more_records(&mut stream).await;
    gw.stop().await;
}

#[tokio::test]
async fn explicit_offset_starts_there_and_a_subset_reads_only_its_partitions() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(3).await;
    let mut publisher = gw.publisher().await;
    for p in 0..3 {
        let records = (0..5).map(|i| record_at(p, &format!("p{p}-{i}"))).collect();
        publish(&mut publisher, &topic, records).await;
    }
    let mut subscriber = gw.subscriber().await;

    let mut request = partitions_request(&topic, StartPosition::Offset);
    request.start_offsets = vec![proto::PartitionOffset {
        topic: String::new(),
        partition: 1,
        offset: 3,
    }];
    let mut stream = subscribe(&mut subscriber, request).await;
    let got = next_records(&mut stream, 2).await;
    assert_eq!(
        got.iter().map(value_of).collect::<Vec<_>>(),
        ["p1-3", "p1-4"]
    );
    assert_no_more_records(&mut stream).await;

    let mut request = partitions_request(&topic, StartPosition::Earliest);
    request.partitions = vec![0, 2];
    let mut stream = subscribe(&mut subscriber, request).await;
    let got = next_records(&mut stream, 10).await;
    assert_eq!(
        got.iter().map(|r| r.partition).collect::<HashSet<_>>(),
        HashSet::from([0, 2])
    );
    assert_no_more_records(&mut stream).await;
    gw.stop().await;
}

#[tokio::test]
async fn timestamp_start_skips_older_records() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(1).await;
    let mut publisher = gw.publisher().await;
    let at = |secs| proto::Record {
        value: Some(format!("t{secs}").into_bytes().into()),
        timestamp: Some(prost_types::Timestamp {
            seconds: secs,
            nanos: 0,
        }),
        ..Default::default()
    };
    publish(
        &mut publisher,
        &topic,
        vec![at(1_000), at(2_000), at(3_000)],
    )
    .await;
    let mut subscriber = gw.subscriber().await;
    let mut request = partitions_request(&topic, StartPosition::Timestamp);
    request.start_timestamp = Some(prost_types::Timestamp {
        seconds: 2_000,
        nanos: 0,
    });
    let mut stream = subscribe(&mut subscriber, request).await;
    let got = next_records(&mut stream, 2).await;
    assert_eq!(
        got.iter().map(value_of).collect::<Vec<_>>(),
        ["t2000", "t3000"]
    );
    gw.stop().await;
}

#[tokio::test]
async fn batched_events_carry_every_record_in_order() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(1).await;
    let mut publisher = gw.publisher().await;
    let mut subscriber = gw.subscriber().await;
    for _ in 0..5 {
        publish(&mut publisher, &topic, numbered(50)).await;
    }
    let request = proto::SubscribeRequest {
        max_batch_records: 100,
        ..partitions_request(&topic, StartPosition::Earliest)
    };
    let mut stream = subscribe(&mut subscriber, request).await;
    let mut values = Vec::new();
    while values.len() < 250 {
        let event = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("records within PATIENCE")
            .expect("stream")
            .expect("open")
            .event;
        match event {
            Some(proto::subscribe_response::Event::Records(batch)) => {
                assert!(
                    (1..=100).contains(&batch.records.len()),
                    "{} records in one event",
                    batch.records.len()
                );
                values.extend(batch.records.iter().map(value_of));
            }
            other => panic!("expected a `records` event, got {other:?}"),
        }
    }
    let expected: Vec<String> = (0..5)
        .flat_map(|_| (0..50).map(|i| i.to_string()))
        .collect();
    assert_eq!(values, expected);

    let status = subscriber
        .subscribe(proto::SubscribeRequest {
            max_batch_records: 10_001,
            ..partitions_request(&topic, StartPosition::Earliest)
        })
        .await
        .expect_err("too large a batch");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("max_batch_records"), "{status:?}");
    gw.stop().await;
}
