//! ACK_MODE_CLIENT: only acknowledged records are committed, unacknowledged ones
//! come again, max_unacked holds delivery back, bad acks get clear errors.

use kafka_gateway::transport::proto::{self, subscribe_response::Event, AckMode, StartPosition};
use kafka_gateway_test_kit::*;
use std::collections::BTreeSet;
use tonic::{transport::Channel, Code, Streaming};

type Subscriber = proto::subscriber_service_client::SubscriberServiceClient<Channel>;

fn client_ack_request(topic: &str, group: &str, max_unacked: i32) -> proto::SubscribeRequest {
    proto::SubscribeRequest {
        ack_mode: AckMode::Client as i32,
        max_unacked,
        ..group_request(topic, group, StartPosition::Earliest)
    }
}

/// Opens a client-ack stream and returns it with its subscription id, which the
/// stream sends first.
async fn open(
    subscriber: &mut Subscriber,
    request: proto::SubscribeRequest,
) -> (Streaming<proto::SubscribeResponse>, String) {
    let mut stream = subscribe(subscriber, request).await;
    let first = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(Event::Started(started)) = first.event else {
        panic!("first event: {first:?}")
    };
    assert!(!started.subscription_id.is_empty());
    (stream, started.subscription_id)
}

async fn ack(
    subscriber: &mut Subscriber,
    id: &str,
    records: &[&proto::ConsumedRecord],
) -> Result<(), tonic::Status> {
    let records = records
        .iter()
        .map(|r| proto::RecordPosition {
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
        })
        .collect();
    subscriber
        .ack(proto::AckRequest {
            subscription_id: id.into(),
            records,
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn only_acknowledged_records_are_committed() {
    let gw = TestGateway::start(&["--commit-interval", "100ms"]).await;
    let topic = topic(1).await;
    let group = unique("g");
    let mut publisher = gw.publisher().await;
    publish(&mut publisher, &topic, numbered(20)).await;

    let mut subscriber = gw.subscriber().await;
    let (mut stream, id) = open(&mut subscriber, client_ack_request(&topic, &group, 0)).await;
    let got = next_records(&mut stream, 20).await;
    // 0..=9 and 15 acknowledged: the group may commit up to 10, not past it.
    let acked: Vec<_> = got
        .iter()
        .filter(|r| r.offset < 10 || r.offset == 15)
        .collect();
    ack(&mut subscriber, &id, &acked)
        .await
        .expect("acks accepted");
    drop(stream);
    wait_until_no_consumers(&gw).await;

    let mut stream = subscribe(
        &mut subscriber,
        group_request(&topic, &group, StartPosition::Earliest),
    )
    .await;
    let again = next_records(&mut stream, 10).await;
    let offsets: BTreeSet<_> = again.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        (10..20).collect(),
        "unacknowledged records did not all come again, or acknowledged ones did"
    );
    assert_no_more_records(&mut stream).await;
    gw.stop().await;
}

#[tokio::test]
async fn max_unacked_holds_delivery_until_acks_arrive() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(1).await;
    let mut publisher = gw.publisher().await;
    publish(&mut publisher, &topic, numbered(20)).await;

    let mut subscriber = gw.subscriber().await;
    let (mut stream, id) = open(&mut subscriber, client_ack_request(&topic, &unique("g"), 5)).await;
    let first = next_records(&mut stream, 5).await;
    assert_no_more_records(&mut stream).await;
    ack(&mut subscriber, &id, &[&first[0], &first[1]])
        .await
        .unwrap();
    let next = next_records(&mut stream, 2).await;
    assert_eq!(next.iter().map(|r| r.offset).collect::<Vec<_>>(), [5, 6]);
    assert_no_more_records(&mut stream).await;
    gw.stop().await;
}

#[tokio::test]
async fn bad_acks_get_clear_errors() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(1).await;
    let mut publisher = gw.publisher().await;
    publish(
        &mut publisher,
        &topic,
        vec![record(None, "a"), record(None, "b")],
    )
    .await;
    let mut subscriber = gw.subscriber().await;

    let status = ack(
        &mut subscriber,
        "no-such-subscription",
        &[&proto::ConsumedRecord {
            topic: topic.clone(),
            ..Default::default()
        }],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    let (mut stream, id) = open(&mut subscriber, client_ack_request(&topic, &unique("g"), 0)).await;
    let first = next_record(&mut stream).await;
    ack(&mut subscriber, &id, &[&first]).await.unwrap();
    let twice = ack(&mut subscriber, &id, &[&first]).await.unwrap_err();
    assert_eq!(twice.code(), Code::InvalidArgument, "{twice:?}");
    let never = proto::ConsumedRecord {
        offset: 99,
        ..first.clone()
    };
    let status = ack(&mut subscriber, &id, &[&never]).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("not delivered"), "{status:?}");
    // A partition the subscription never read, and a negative partition, are
    // records it never delivered (these were FAILED_PRECONDITION, as if revoked,
    // and the negative one was not checked).
    for partition in [7, -5] {
        let elsewhere = proto::ConsumedRecord {
            partition,
            ..first.clone()
        };
        let status = ack(&mut subscriber, &id, &[&elsewhere]).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }

    let no_group = proto::SubscribeRequest {
        ack_mode: AckMode::Client as i32,
        ..partitions_request(&topic, StartPosition::Earliest)
    };
    let status = subscriber.subscribe(no_group).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    gw.stop().await;
}

#[tokio::test]
async fn a_group_stream_announces_its_partitions_before_their_records() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(2).await;
    let mut publisher = gw.publisher().await;
    publish(
        &mut publisher,
        &topic,
        vec![record_at(0, "a"), record_at(1, "b")],
    )
    .await;
    let mut subscriber = gw.subscriber().await;
    let mut stream = subscribe(
        &mut subscriber,
        group_request(&topic, &unique("g"), StartPosition::Earliest),
    )
    .await;
    let first = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(Event::Assigned(assigned)) = first.event else {
        panic!("first event: {first:?}")
    };
    let partitions: BTreeSet<_> = assigned
        .partitions
        .iter()
        .map(|p| (p.topic.clone(), p.partition))
        .collect();
    assert_eq!(
        partitions,
        BTreeSet::from([(topic.clone(), 0), (topic.clone(), 1)])
    );
    next_records(&mut stream, 2).await;
    gw.stop().await;
}

#[tokio::test]
async fn consume_carries_subscribe_then_acks_on_one_stream() {
    let gw = TestGateway::start(&["--commit-interval", "100ms"]).await;
    let topic = topic(1).await;
    let group = unique("g");
    let mut publisher = gw.publisher().await;
    publish(&mut publisher, &topic, numbered(10)).await;
    let mut subscriber = gw.subscriber().await;

    let (send, requests) = tokio::sync::mpsc::channel(8);
    send.send(proto::ConsumeRequest {
        request: Some(proto::consume_request::Request::Subscribe(group_request(
            &topic,
            &group,
            StartPosition::Earliest,
        ))),
    })
    .await
    .unwrap();
    let mut stream = subscriber
        .consume(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await
        .expect("consume")
        .into_inner();
    let mut records = Vec::new();
    while records.len() < 10 {
        let event = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(proto::consume_response::Event::Record(record)) = event.event {
            records.push(record);
        }
    }
    let positions = |offsets: &mut dyn Iterator<Item = i64>| {
        offsets
            .map(|offset| proto::RecordPosition {
                topic: topic.clone(),
                partition: 0,
                offset,
            })
            .collect()
    };
    let ack = |records| proto::ConsumeRequest {
        request: Some(proto::consume_request::Request::Ack(proto::ConsumeAck {
            records,
        })),
    };
    send.send(ack(positions(&mut (0..5)))).await.unwrap();
    // An ack for a record never delivered is rejected; the stream goes on.
    send.send(ack(positions(&mut [99].into_iter())))
        .await
        .unwrap();
    let rejected = loop {
        let event = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(proto::consume_response::Event::AckRejected(rejected)) = event.event {
            break rejected;
        }
    };
    assert_eq!(
        rejected.code,
        Code::InvalidArgument as i32,
        "{}",
        rejected.message
    );
    drop(send);
    drop(stream);
    wait_until_no_consumers(&gw).await;

    let mut stream = subscribe(
        &mut subscriber,
        group_request(&topic, &group, StartPosition::Earliest),
    )
    .await;
    let again = next_records(&mut stream, 5).await;
    assert_eq!(
        again.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [5, 6, 7, 8, 9]
    );
    assert_no_more_records(&mut stream).await;
    gw.stop().await;
}

#[tokio::test]
async fn consume_must_start_with_subscribe() {
    let gw = TestGateway::start(&[]).await;
    let mut subscriber = gw.subscriber().await;
    let first = proto::ConsumeRequest {
        request: Some(proto::consume_request::Request::Ack(proto::ConsumeAck {
            records: vec![],
        })),
    };
    let status = subscriber
        .consume(tokio_stream::iter([first]))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    gw.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_commits_what_was_acknowledged() {
    // A long interval: only the shutdown itself can commit.
    let gw = TestGateway::start(&["--commit-interval", "1h"]).await;
    let topic = topic(1).await;
    let group = unique("g");
    let mut publisher = gw.publisher().await;
    publish(&mut publisher, &topic, numbered(10)).await;
    let mut subscriber = gw.subscriber().await;
    let (mut stream, id) = open(&mut subscriber, client_ack_request(&topic, &group, 0)).await;
    let got = next_records(&mut stream, 10).await;
    let first_six: Vec<_> = got.iter().take(6).collect();
    ack(&mut subscriber, &id, &first_six).await.unwrap();
    gw.stop().await;
    let end = loop {
        match tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("stream ends")
        {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    assert_eq!(end.expect_err("a status").code(), Code::Unavailable);

    let gw = TestGateway::start(&[]).await;
    let mut subscriber = gw.subscriber().await;
    let mut stream = subscribe(
        &mut subscriber,
        group_request(&topic, &group, StartPosition::Earliest),
    )
    .await;
    let again = next_records(&mut stream, 4).await;
    assert_eq!(
        again.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [6, 7, 8, 9]
    );
    assert_no_more_records(&mut stream).await;
    gw.stop().await;
}
