//! Every error class maps to its gRPC status code and carries its reason in the
//! standard details, and a bad request never affects the next one.

use kafka_gateway::transport::proto::{self, ErrorReason, StartPosition};
use kafka_gateway_test_kit::*;
use prost::Message;
use std::{collections::HashMap, time::Duration};
use tonic::{Code, Request};
use tonic_types::StatusExt;

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

    let bad_timestamp = proto::Record {
        timestamp: Some(prost_types::Timestamp {
            seconds: -1,
            nanos: 0,
        }),
        ..record(None, "x")
    };
    // Each with a word of its message, its reason and the field at fault.
    let cases = vec![
        (
            publish_to("bad topic!", vec![record(None, "x")]),
            "invalid topic name",
            "INVALID_TOPIC_NAME",
            "topic",
        ),
        (
            publish_to("", vec![record(None, "x")]),
            "invalid topic name",
            "INVALID_TOPIC_NAME",
            "topic",
        ),
        // A huge name is shown by its start and length, not copied whole.
        (
            publish_to(&"\u{7f}".repeat(1 << 20), vec![record(None, "x")]),
            "(1048576 bytes)",
            "INVALID_TOPIC_NAME",
            "topic",
        ),
        (
            publish_to(&topic, vec![]),
            "records is empty",
            "NO_RECORDS",
            "records",
        ),
        (
            publish_to(&topic, vec![record(None, "x"); 10_001]),
            "at most 10000",
            "TOO_MANY_ENTRIES",
            "records",
        ),
        (
            publish_to(&topic, vec![proto::Record::default()]),
            "neither key nor value",
            "EMPTY_RECORD",
            "records[0]",
        ),
        (
            publish_to(&topic, vec![record(None, &"x".repeat(1001))]),
            "over the limit of 1000 bytes",
            "RECORD_TOO_LARGE",
            "records[0]",
        ),
        (
            publish_to(
                &topic,
                vec![
                    record(None, "x"),
                    proto::Record {
                        partition: Some(-1),
                        ..record(None, "x")
                    },
                ],
            ),
            "negative",
            "INVALID_PARTITION",
            "records[1].partition",
        ),
        (
            publish_to(&topic, vec![bad_timestamp]),
            "out of range",
            "INVALID_TIMESTAMP",
            "records[0].timestamp",
        ),
    ];
    for (request, expected, reason, field) in cases {
        let status = publisher.publish(request).await.expect_err("refused");
        let got = details(&status);
        got.assert_is(Code::InvalidArgument, reason);
        assert_eq!(got.fields, [field], "{got:?}");
        assert_eq!(got.metadata["field"], field, "{got:?}");
        assert!(got.retry_after.is_none(), "{got:?}");
        let (code, message) = code_of(Err::<(), _>(status));
        assert_eq!(code, Code::InvalidArgument, "{message:.300}");
        assert!(
            message.contains(expected),
            "{message:.300?} does not mention {expected:?}"
        );
        assert!(message.len() < 2000, "a message of {} bytes", message.len());
    }
    let got = details_of(
        publisher
            .publish(publish_to(&topic, vec![record(None, "x"); 10_001]))
            .await,
    );
    assert_eq!(got.metadata["limit"], "10000");
    let got = details_of(
        publisher
            .publish(publish_to(&topic, vec![record(None, &"x".repeat(1001))]))
            .await,
    );
    let (index, limit) = (&got.metadata["index"], &got.metadata["limit"]);
    assert_eq!((index.as_str(), limit.as_str()), ("0", "1000"));

    let mut offset_without_offsets = partitions_request(&topic, StartPosition::Offset);
    offset_without_offsets.start_offsets.clear();
    let mut group_with_partitions = group_request(&topic, "g", StartPosition::Earliest);
    group_with_partitions.partitions = vec![0];
    let mut unknown_start = partitions_request(&topic, StartPosition::Latest);
    unknown_start.start = 99;
    let mut bad_topic_in_list = partitions_request(&topic, StartPosition::Earliest);
    bad_topic_in_list.topics.push("bad topic!".into());
    let cases = [
        (offset_without_offsets, "INVALID_FIELD", "start_offsets"),
        (group_with_partitions, "INVALID_FIELD", "partitions"),
        (unknown_start, "INVALID_FIELD", "start"),
        (bad_topic_in_list, "INVALID_TOPIC_NAME", "topics[1]"),
    ];
    for (request, reason, field) in cases {
        let status = subscriber.subscribe(request).await.expect_err("refused");
        let got = details(&status);
        got.assert_is(Code::InvalidArgument, reason);
        assert_eq!(got.fields, [field], "{got:?}");
        let (code, message) = code_of(Err::<(), _>(status));
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
    let got = details_of(
        subscriber
            .subscribe(partitions_request(&missing, StartPosition::Earliest))
            .await,
    );
    got.assert_is(Code::NotFound, "TOPIC_NOT_FOUND");
    assert_eq!(got.metadata["topic"], missing);
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
    // Partitions are checked before any record is written: the details list
    // every record that failed, and none written.
    let got = details_of(
        publisher
            .publish(proto::PublishRequest {
                topic: topic.clone(),
                records: vec![record_at(0, "a"), record_at(7, "b"), record_at(9, "c")],
            })
            .await,
    );
    got.assert_is(Code::NotFound, "PARTITION_NOT_FOUND");
    assert_eq!(
        got.metadata["index"], "1",
        "the first failed record: {got:?}"
    );
    let failure = got.failure.expect("a PublishFailure");
    let failed = failed_records(&failure);
    let not_found = ErrorReason::PartitionNotFound;
    assert_eq!(failed, [(1, not_found), (2, not_found)]);
    assert!(failure.written.is_empty());
    assert_eq!((failure.failed_count, failure.written_count), (2, 0));

    let mut request = partitions_request(&topic, StartPosition::Earliest);
    request.partitions = vec![5];
    let (code, _) = code_of(subscriber.subscribe(request.clone()).await);
    assert_eq!(code, Code::NotFound);
    let got = details_of(subscriber.subscribe(request).await);
    got.assert_is(Code::NotFound, "PARTITION_NOT_FOUND");
    let (partition, count) = (&got.metadata["partition"], &got.metadata["partition_count"]);
    assert_eq!((partition.as_str(), count.as_str()), ("5", "2"));
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
    let status = subscriber.subscribe(request).await.expect_err("refused");
    let got = details(&status);
    got.assert_is(Code::OutOfRange, "OFFSET_OUT_OF_RANGE");
    let offsets =
        ["partition", "offset", "earliest_offset", "end_offset"].map(|k| got.metadata[k].as_str());
    assert_eq!(offsets, ["0", "3", "0", "2"], "{got:?}");
    let (code, message) = code_of(Err::<(), _>(status));
    assert_eq!(code, Code::OutOfRange, "{message}");
    assert!(message.contains("0 to 2"), "{message}");
    gw.stop().await;
}

#[tokio::test]
async fn an_unreachable_broker_is_unavailable_and_deadlines_are_honoured() {
    // A port nothing listens on.
    let brokers = format!("127.0.0.1:{}", free_port());
    let mut config = config(&["--broker-timeout", "2s"]);
    config.kafka.brokers = Some(brokers);
    let gw = TestGateway::start_with(config).await;
    let mut publisher = gw.publisher().await;
    let request = || proto::PublishRequest {
        topic: "anything".into(),
        records: vec![record(None, "x")],
    };

    let status = publisher.publish(request()).await.expect_err("unavailable");
    let got = details(&status);
    assert_eq!(got.reason, "BROKER_UNAVAILABLE", "{got:?}");
    assert!(got.retry_after.is_some(), "retrying helps: {got:?}");
    let (code, message) = code_of(Err::<(), _>(status));
    assert_eq!(code, Code::Unavailable, "{message}");

    let mut with_deadline = Request::new(request());
    with_deadline.set_timeout(std::time::Duration::from_millis(300));
    let status = publisher
        .publish(with_deadline)
        .await
        .expect_err("too late");
    assert_eq!(details(&status).reason, "DEADLINE_EXCEEDED");
    let (code, message) = code_of(Err::<(), _>(status));
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
    let status = publisher
        .publish(proto::PublishRequest {
            topic: topic.clone(),
            records,
        })
        .await
        .expect_err("the queue is full");
    // The first record is written, the second finds the queue full, and the rest
    // are not handed to Kafka.
    let got = details(&status);
    got.assert_is(Code::ResourceExhausted, "QUEUE_FULL");
    assert!(got.retry_after.is_some(), "retrying helps: {got:?}");
    let failure = got.failure.expect("a PublishFailure");
    let failed = failed_records(&failure);
    assert_eq!(failed, [(1, ErrorReason::QueueFull)]);
    let written: Vec<_> = failure
        .written
        .iter()
        .map(|w| (w.index, w.offset))
        .collect();
    assert_eq!(written, [(0, 0)]);
    assert!(failure.written[0].timestamp.is_some());
    let (code, message) = code_of(Err::<(), _>(status));
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
    // What the details said was written is what the topic holds.
    let mut subscriber = gw.subscriber().await;
    let mut stream = subscribe(
        &mut subscriber,
        partitions_request(&topic, StartPosition::Earliest),
    )
    .await;
    let values: Vec<_> = next_records(&mut stream, 2)
        .await
        .iter()
        .map(value_of)
        .collect();
    assert_eq!(values, ["0", "after"]);
    assert_no_more_records(&mut stream).await;
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
    let status = publisher.publish(request).await.expect_err("refused");
    let got = details(&status);
    got.assert_is(Code::NotFound, "TOPIC_NOT_FOUND");
    assert!(
        got.failure.is_none(),
        "nothing was handed to Kafka: {got:?}"
    );
    let (code, message) = code_of(Err::<(), _>(status));
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
    let status = subscriber
        .subscribe(partitions_request(&topic, StartPosition::Earliest))
        .await
        .expect_err("refused");
    let got = details(&status);
    got.assert_is(Code::ResourceExhausted, "OVERLOADED");
    assert_eq!(got.metadata["limit"], "1");
    assert!(got.retry_after.is_some(), "{got:?}");
    let (code, message) = code_of(Err::<(), _>(status));
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

#[tokio::test]
async fn one_connection_holds_only_its_share_of_consumers() {
    let gw = TestGateway::start(&["--max-subscriptions-per-connection", "2"]).await;
    let topic = topic(1).await;
    let earliest = || partitions_request(&topic, StartPosition::Earliest);
    let mut greedy = gw.subscriber().await;
    let first = subscribe(&mut greedy, earliest()).await;
    let _second = subscribe(&mut greedy, earliest()).await;
    let status = greedy.subscribe(earliest()).await.expect_err("refused");
    let got = details(&status);
    got.assert_is(Code::ResourceExhausted, "OVERLOADED");
    assert_eq!(got.metadata["limit"], "2");
    assert!(got.retry_after.is_some(), "{got:?}");
    assert!(
        status
            .message()
            .contains("--max-subscriptions-per-connection"),
        "{status:?}"
    );
    // Another connection has a share of its own.
    let mut other = gw.subscriber().await;
    let _theirs = subscribe(&mut other, earliest()).await;
    // Ending a stream gives its place back to its connection.
    drop(first);
    let reopened = tokio::time::timeout(PATIENCE, async {
        loop {
            if greedy.subscribe(earliest()).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(reopened.is_ok(), "the place of the ended stream came back");
    gw.stop().await;
}

/// What the standard details of an error status say.
#[derive(Debug)]
struct Details {
    code: Code,
    reason: String,
    metadata: HashMap<String, String>,
    retry_after: Option<Duration>,
    /// Fields named by a `BadRequest`.
    fields: Vec<String>,
    failure: Option<proto::PublishFailure>,
}

/// Decodes the details of `result`'s error status, checking what every error
/// carries: an ErrorInfo of the gateway's domain whose reason is an ErrorReason.
fn details_of<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Details {
    details(&result.expect_err("expected an error status"))
}

impl Details {
    fn assert_is(&self, code: Code, reason: &str) {
        assert_eq!(
            (self.code, self.reason.as_str()),
            (code, reason),
            "{self:?}"
        );
    }
}

/// The failed records of a batch, by index and reason.
fn failed_records(failure: &proto::PublishFailure) -> Vec<(i32, ErrorReason)> {
    failure
        .failed
        .iter()
        .map(|f| (f.index, f.reason()))
        .collect()
}

fn details(status: &tonic::Status) -> Details {
    let decoded = status.get_error_details();
    let info = decoded
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "kafka-gateway");
    assert!(
        ErrorReason::from_str_name(&info.reason).is_some(),
        "{} is not an ErrorReason",
        info.reason
    );
    let failure = tonic_types::pb::Status::decode(status.details())
        .expect("details decode")
        .details
        .into_iter()
        .find(|any| any.type_url == "type.googleapis.com/kafka_gateway.v1.PublishFailure")
        .map(|any| proto::PublishFailure::decode(any.value.as_slice()).expect("PublishFailure"));
    Details {
        code: status.code(),
        reason: info.reason.clone(),
        metadata: info.metadata.clone(),
        retry_after: decoded.retry_info().and_then(|r| r.retry_delay),
        fields: decoded
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
            .unwrap_or_default(),
        failure,
    }
}

#[tokio::test]
async fn acks_and_consume_requests_have_their_reasons() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(1).await;
    let mut publisher = gw.publisher().await;
    publish(&mut publisher, &topic, numbered(2)).await;
    let mut subscriber = gw.subscriber().await;

    let ack_request = |id: &str, offset| proto::AckRequest {
        subscription_id: id.into(),
        records: vec![proto::RecordPosition {
            topic: topic.clone(),
            partition: 0,
            offset,
        }],
    };
    let got = details_of(subscriber.ack(ack_request("no-such-subscription", 0)).await);
    got.assert_is(Code::NotFound, "UNKNOWN_SUBSCRIPTION");

    // A Consume stream in ACK_MODE_AUTO rejects acks, with the reason; the first
    // request of a Consume must be `subscribe`.
    let (send, requests) = tokio::sync::mpsc::channel(4);
    let subscribe_request = proto::SubscribeRequest {
        ack_mode: proto::AckMode::Auto as i32,
        ..partitions_request(&topic, StartPosition::Earliest)
    };
    send.send(proto::ConsumeRequest {
        request: Some(proto::consume_request::Request::Subscribe(
            subscribe_request,
        )),
    })
    .await
    .unwrap();
    let mut stream = subscriber
        .consume(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await
        .expect("consume opens")
        .into_inner();
    let ack = |offset| proto::ConsumeRequest {
        request: Some(proto::consume_request::Request::Ack(proto::ConsumeAck {
            records: vec![proto::RecordPosition {
                topic: topic.clone(),
                partition: 0,
                offset,
            }],
        })),
    };
    send.send(ack(0)).await.unwrap();
    let rejected = loop {
        let event = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("events come")
            .expect("no error")
            .expect("the stream goes on");
        if let Some(proto::consume_response::Event::AckRejected(rejected)) = event.event {
            break rejected;
        }
    };
    assert_eq!(
        rejected.code,
        Code::FailedPrecondition as i32,
        "{rejected:?}"
    );
    assert_eq!(
        rejected.reason(),
        ErrorReason::AcksNotEnabled,
        "{rejected:?}"
    );

    drop((send, stream));

    let got = details_of(subscriber.consume(tokio_stream::iter([ack(0)])).await);
    got.assert_is(Code::InvalidArgument, "MISSING_FIELD");
    assert_eq!(got.fields, ["subscribe"]);

    // An ack for a record the subscription never delivered.
    let group = unique("g");
    let request = proto::SubscribeRequest {
        ack_mode: proto::AckMode::Client as i32,
        ..group_request(&topic, &group, StartPosition::Earliest)
    };
    let mut stream = subscribe(&mut subscriber, request).await;
    // A client-acknowledged stream starts by naming its subscription.
    let first = tokio::time::timeout(PATIENCE, stream.message()).await;
    let first = first
        .expect("in time")
        .expect("no error")
        .expect("an event");
    let Some(proto::subscribe_response::Event::Started(started)) = first.event else {
        panic!("first event: {first:?}")
    };
    let id = started.subscription_id;
    let got = details_of(subscriber.ack(ack_request(&id, 99)).await);
    got.assert_is(Code::InvalidArgument, "RECORD_NOT_DELIVERED");
    let position = ["topic", "partition", "offset"].map(|k| got.metadata[k].clone());
    assert_eq!(position, [topic.clone(), "0".into(), "99".into()]);
    gw.stop().await;
}

#[tokio::test]
async fn a_unary_request_over_the_size_limit_is_resource_exhausted() {
    let gw =
        TestGateway::start(&["--max-request-bytes", "4096", "--max-message-bytes", "1024"]).await;
    let topic = topic(1).await;
    let mut publisher = gw.publisher().await;
    let got = details_of(
        publisher
            .publish(proto::PublishRequest {
                topic: topic.clone(),
                records: (0..10).map(|_| record(None, &"x".repeat(1000))).collect(),
            })
            .await,
    );
    got.assert_is(Code::ResourceExhausted, "REQUEST_TOO_LARGE");
    // An offset out of range keeps OUT_OF_RANGE: only tonic's size answer is mapped.
    let mut subscriber = gw.subscriber().await;
    let status = subscriber
        .subscribe(proto::SubscribeRequest {
            start_offsets: vec![proto::PartitionOffset {
                topic: topic.clone(),
                partition: 0,
                offset: 1_000,
            }],
            ..partitions_request(&topic, StartPosition::Offset)
        })
        .await
        .expect_err("out of range");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    gw.stop().await;
}

#[tokio::test]
async fn publish_stream_answers_carry_the_reason() {
    let gw =
        TestGateway::start(&["--max-request-bytes", "4096", "--max-message-bytes", "1024"]).await;
    let topic = topic(1).await;
    let request = |id: &str, record: Option<proto::Record>| proto::PublishStreamRequest {
        topic: topic.clone(),
        record,
        correlation_id: id.into(),
    };
    let requests = vec![
        request("ok", Some(record(None, "x"))),
        request("none", None),
        request(&"x".repeat(2000), Some(record(None, "x"))),
        request("part", Some(record_at(3, "x"))),
        request("huge", Some(record(None, &"x".repeat(10_000)))),
    ];
    let mut publisher = gw.publisher().await;
    let mut stream = publisher
        .publish_stream(tokio_stream::iter(requests))
        .await
        .expect("stream opens")
        .into_inner();
    let mut reasons = Vec::new();
    let end = loop {
        match tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("answers come")
        {
            Ok(Some(answer)) => match answer.result.expect("a result") {
                proto::publish_stream_response::Result::Ack(_) => {
                    reasons.push((answer.correlation_id, ErrorReason::Unspecified))
                }
                proto::publish_stream_response::Result::Error(e) => {
                    reasons.push((answer.correlation_id.chars().take(8).collect(), e.reason()))
                }
            },
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("none".to_string(), ErrorReason::MissingField),
            ("ok".to_string(), ErrorReason::Unspecified),
            ("part".to_string(), ErrorReason::PartitionNotFound),
            ("xxxxxxxx".to_string(), ErrorReason::CorrelationIdTooLong),
        ]
    );
    // The request over --max-request-bytes ends the stream.
    let got = details(&end);
    got.assert_is(Code::ResourceExhausted, "REQUEST_TOO_LARGE");
    gw.stop().await;
}
