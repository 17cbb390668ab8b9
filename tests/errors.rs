//! Every error class maps to its gRPC status code, and a bad request never affects
//! the next one.

mod common;

use common::*;
use kafka_gateway::transport::proto::{self, StartPosition};
use tonic::{Code, Request};

fn code_of<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> (Code, String) {
    let status = result.expect_err("expected an error status");
    (status.code(), status.message().to_string())
}

#[tokio::test]
async fn invalid_input_is_invalid_argument_and_harms_nobody() {
    let gw = TestGateway::start(&["--max-message-bytes", "1000"]).await;
    let topic = topic(2).await;
    let mut publisher = gw.publisher().await;
    let mut subscriber = gw.subscriber().await;
    let publish_to = |topic: &str, records: Vec<proto::Record>| proto::PublishRequest {
        topic: topic.into(),
        records,
    };

    let cases = vec![
        (
            publish_to("bad topic!", vec![record(None, "x")]),
            "invalid topic name",
        ),
        (
            publish_to("", vec![record(None, "x")]),
            "invalid topic name",
        ),
        // A huge name is shown by its start and length, not copied whole.
        (
            publish_to(&"\u{7f}".repeat(1 << 20), vec![record(None, "x")]),
            "(1048576 bytes)",
        ),
        (publish_to(&topic, vec![]), "records is empty"),
        (
            publish_to(&topic, vec![record(None, "x"); 10_001]),
            "at most 10000",
        ),
        (
            publish_to(&topic, vec![proto::Record::default()]),
            "neither key nor value",
        ),
        (
            publish_to(&topic, vec![record(None, &"x".repeat(1001))]),
            "over the limit of 1000 bytes",
        ),
        (
            publish_to(
                &topic,
                vec![proto::Record {
                    partition: Some(-1),
                    ..record(None, "x")
                }],
            ),
            "negative",
        ),
    ];
    for (request, expected) in cases {
        let (code, message) = code_of(publisher.publish(request).await);
        assert_eq!(code, Code::InvalidArgument, "{message:.300}");
        assert!(
            message.contains(expected),
            "{message:.300?} does not mention {expected:?}"
        );
        assert!(message.len() < 2000, "a message of {} bytes", message.len());
    }

    let mut offset_without_offsets = partitions_request(&topic, StartPosition::Offset);
    offset_without_offsets.start_offsets.clear();
    let mut group_with_partitions = group_request(&topic, "g", StartPosition::Earliest);
    group_with_partitions.partitions = vec![0];
    let mut unknown_start = partitions_request(&topic, StartPosition::Latest);
    unknown_start.start = 99;
    for request in [offset_without_offsets, group_with_partitions, unknown_start] {
        let (code, message) = code_of(subscriber.subscribe(request).await);
        assert_eq!(code, Code::InvalidArgument, "{message}");
    }

    // The gateway still serves everyone.
    let results = publish(&mut publisher, &topic, vec![record(None, "fine")]).await;
    assert_eq!(results.len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn missing_topics_and_partitions_are_not_found() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(2).await;
    let mut publisher = gw.publisher().await;
    let mut subscriber = gw.subscriber().await;

    let missing = unique("missing");
    let (code, message) = code_of(
        subscriber
            .subscribe(partitions_request(&missing, StartPosition::Earliest))
            .await,
    );
    assert_eq!(code, Code::NotFound, "{message}");
    assert!(message.contains(&missing), "{message}");
    let (code, _) = code_of(
        subscriber
            .subscribe(group_request(&missing, "g", StartPosition::Earliest))
            .await,
    );
    assert_eq!(code, Code::NotFound);

    let (code, message) = code_of(
        publisher
            .publish(proto::PublishRequest {
                topic: topic.clone(),
                records: vec![record_at(7, "x")],
            })
            .await,
    );
    assert_eq!(code, Code::NotFound, "{message}");
    assert!(
        message.contains("partition 7") && message.contains("has 2 partitions"),
        "{message}"
    );

    let mut request = partitions_request(&topic, StartPosition::Earliest);
    request.partitions = vec![5];
    let (code, _) = code_of(subscriber.subscribe(request).await);
    assert_eq!(code, Code::NotFound);
    gw.stop().await;
}

#[tokio::test]
async fn a_start_offset_past_the_end_is_out_of_range() {
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
    let mut request = partitions_request(&topic, StartPosition::Offset);
    request.start_offsets = vec![proto::PartitionOffset {
        topic: topic.clone(),
        partition: 0,
        offset: 3,
    }];
    let (code, message) = code_of(subscriber.subscribe(request).await);
    assert_eq!(code, Code::OutOfRange, "{message}");
    assert!(message.contains("0 to 2"), "{message}");
    gw.stop().await;
}

#[tokio::test]
async fn an_unreachable_broker_is_unavailable_and_deadlines_are_honoured() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let brokers = format!("127.0.0.1:{port}");
    let mut config = config(&["--broker-timeout", "2s"]);
    config.brokers = Some(brokers);
    let gw = TestGateway::start_with(config).await;
    let mut publisher = gw.publisher().await;
    let request = || proto::PublishRequest {
        topic: "anything".into(),
        records: vec![record(None, "x")],
    };

    let (code, message) = code_of(publisher.publish(request()).await);
    assert_eq!(code, Code::Unavailable, "{message}");

    let mut with_deadline = Request::new(request());
    with_deadline.set_timeout(std::time::Duration::from_millis(300));
    let (code, message) = code_of(publisher.publish(with_deadline).await);
    assert_eq!(code, Code::DeadlineExceeded, "{message}");

    let mut subscriber = gw.subscriber().await;
    let mut with_deadline = Request::new(partitions_request("anything", StartPosition::Earliest));
    with_deadline.set_timeout(std::time::Duration::from_millis(300));
    let (code, message) = code_of(subscriber.subscribe(with_deadline).await);
    assert_eq!(code, Code::DeadlineExceeded, "{message}");
    gw.stop().await;
}

#[tokio::test]
async fn an_open_stream_ends_with_deadline_exceeded() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(1).await;
    let mut subscriber = gw.subscriber().await;
    let mut request = Request::new(partitions_request(&topic, StartPosition::Latest));
    request.set_timeout(std::time::Duration::from_millis(1500));
    let mut stream = subscriber
        .subscribe(request)
        .await
        .expect("subscribe")
        .into_inner();
    let end = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("stream ends");
    assert_eq!(
        end.expect_err("status at the deadline").code(),
        Code::DeadlineExceeded
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_full_producer_queue_is_resource_exhausted() {
    // One record fits in the queue, and it stays there for the linger time.
    let gw = TestGateway::start(&["--producer-queue-messages", "1", "--linger", "1s"]).await;
    let topic = topic(1).await;
    let mut publisher = gw.publisher().await;
    let records = numbered(20);
    let (code, message) = code_of(
        publisher
            .publish(proto::PublishRequest {
                topic: topic.clone(),
                records,
            })
            .await,
    );
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    assert!(message.contains("record 1 of 20"), "{message}");
    // The lingering record drains within the linger time; publishing then works
    // again, and until then fails the same clean way.
    let retried = tokio::time::timeout(PATIENCE, async {
        loop {
            let request = proto::PublishRequest {
                topic: topic.clone(),
                records: vec![record(None, "after")],
            };
            match publisher.publish(request).await {
                Ok(response) => break response.into_inner().results,
                Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the queue drains");
    assert_eq!(retried.len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn publishing_to_a_missing_topic_is_not_found_when_auto_creation_is_off() {
    // This broker creates topics on first use, as Kafka does with
    // auto.create.topics.enable=true; the client-side switch turns that off.
    let gw = TestGateway::start(&["--kafka-config", "allow.auto.create.topics=false"]).await;
    let mut publisher = gw.publisher().await;
    let missing = unique("missing");
    let request = proto::PublishRequest {
        topic: missing.clone(),
        records: vec![record(None, "x")],
    };
    let (code, message) = code_of(publisher.publish(request).await);
    assert_eq!(code, Code::NotFound, "{message}");
    assert!(
        message.contains(&missing) && message.contains("does not exist"),
        "{message}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn subscriptions_past_the_cap_are_resource_exhausted() {
    // EARLIEST streams have a consumer of their own (fan-out streams have their
    // own cap, tested with fan-out).
    let gw = TestGateway::start(&["--max-subscriptions", "1"]).await;
    let topic = topic(1).await;
    let mut subscriber = gw.subscriber().await;
    let first = subscribe(
        &mut subscriber,
        partitions_request(&topic, StartPosition::Earliest),
    )
    .await;
    let (code, message) = code_of(
        subscriber
            .subscribe(partitions_request(&topic, StartPosition::Earliest))
            .await,
    );
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    assert!(message.contains("--max-subscriptions"), "{message}");
    // Closing the first stream frees its place.
    drop(first);
    wait_until_no_consumers(&gw).await;
    subscribe(
        &mut subscriber,
        partitions_request(&topic, StartPosition::Earliest),
    )
    .await;
    gw.stop().await;
}
