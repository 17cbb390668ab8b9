//! Faults: a gateway killed with SIGKILL loses no acknowledged progress and no
//! unacknowledged record.

use kafka_gateway::transport::proto::{
    self, publisher_service_client::PublisherServiceClient, subscribe_response::Event,
    subscriber_service_client::SubscriberServiceClient, AckMode, StartPosition,
};
use kafka_gateway_test_kit::*;
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    ClientConfig, Offset, TopicPartitionList,
};
use std::{collections::BTreeSet, time::Duration};

/// The group's committed offset for partition 0 of `topic`, as the broker has it.
fn committed(group: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let answer = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .ok()?;
    match answer.find_partition(topic, 0)?.offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

#[tokio::test]
async fn sigkill_with_acked_and_unacked_records_loses_nothing_unacknowledged() {
    let topic = topic(1).await;
    let group = unique("g");
    let gateway = GatewayProcess::spawn(
        gateway_binary!(),
        &brokers(),
        &["--commit-interval", "200ms"],
    );
    let channel = gateway.channel().await;
    let mut publisher = PublisherServiceClient::new(channel.clone());
    publish(&mut publisher, &topic, numbered(1000)).await;

    let mut subscriber = SubscriberServiceClient::new(channel);
    let request = proto::SubscribeRequest {
        ack_mode: AckMode::Client as i32,
        max_unacked: 2000,
        ..group_request(&topic, &group, StartPosition::Earliest)
    };
    let mut stream = subscribe(&mut subscriber, request).await;
    let first = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(Event::Started(started)) = first.event else {
        panic!("first event: {first:?}")
    };
    let delivered = next_records(&mut stream, 1000).await;
    let acked: Vec<_> = delivered
        .iter()
        .filter(|r| r.offset < 500)
        .map(|r| proto::RecordPosition {
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
        })
        .collect();
    subscriber
        .ack(proto::AckRequest {
            subscription_id: started.subscription_id,
            records: acked,
        })
        .await
        .expect("acks accepted");

    // The bound: acknowledged records are redelivered only if the gateway dies
    // before the next commit interval commits them. Wait for that commit, so
    // the bound here is zero.
    let commit_seen = tokio::time::timeout(PATIENCE, async {
        while committed(&group, &topic) != Some(500) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        commit_seen.is_ok(),
        "the acknowledged offsets were never committed: {:?}",
        committed(&group, &topic)
    );

    gateway.signal("KILL");
    drop(stream);
    drop(gateway);

    // A new gateway and a new member of the group: every unacknowledged record
    // comes again, no acknowledged one does. (The dead member stays in the group
    // until its session times out; the new member waits for that rebalance.)
    let gw = TestGateway::start(&[]).await;
    let mut subscriber = gw.subscriber().await;
    let mut stream = subscribe(
        &mut subscriber,
        group_request(&topic, &group, StartPosition::Earliest),
    )
    .await;
    let again = next_records(&mut stream, 500).await;
    let offsets: BTreeSet<_> = again.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (500..1000).collect());
    assert_no_more_records(&mut stream).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_short_broker_restart_during_a_publish_stream_loses_no_acknowledged_record() {
    publish_through_broker_restart("5s", Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_broker_outage_longer_than_the_delivery_timeout_fails_records_cleanly() {
    let (_acked, unavailable) = publish_through_broker_restart("1s", Duration::from_secs(3)).await;
    assert!(
        unavailable > 0,
        "no record timed out during a 3 s outage with a 1 s delivery timeout"
    );
}

/// Streams 10,000 records and stops the broker for `downtime` after 2,000 answers.
/// Checks that every record is answered once, acked or UNAVAILABLE; that the same
/// gateway publishes again afterwards; and that every acked record is in the topic
/// at its acknowledged position. Returns (acked, unavailable).
async fn publish_through_broker_restart(
    delivery_timeout: &str,
    downtime: Duration,
) -> (usize, usize) {
    const RECORDS: usize = 10_000;
    let mut broker = OwnBroker::start();
    let mut config = config(&[
        "--delivery-timeout",
        delivery_timeout,
        "--broker-timeout",
        "5s",
    ]);
    config.kafka.brokers = Some(broker.address());
    let gw = TestGateway::start_with(config).await;
    let topic = unique("restart");
    broker.create_topic(&topic, 2).await;

    let (send, requests) = tokio::sync::mpsc::channel(64);
    let feeder = {
        let topic = topic.clone();
        tokio::spawn(async move {
            for i in 0..RECORDS {
                let request = proto::PublishStreamRequest {
                    topic: topic.clone(),
                    record: Some(record(Some(&i.to_string()), &i.to_string())),
                    correlation_id: i.to_string(),
                };
                if send.send(request).await.is_err() {
                    break;
                }
            }
        })
    };
    let mut publisher = gw.publisher().await;
    let mut answers = publisher
        .publish_stream(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await
        .expect("stream opens")
        .into_inner();

    let mut outcomes = std::collections::HashMap::new();
    let mut restarted = false;
    while outcomes.len() < RECORDS {
        let answer = tokio::time::timeout(PATIENCE, answers.message())
            .await
            .expect("answers keep coming")
            .expect("the stream stays up")
            .expect("an answer for every record");
        let previous = outcomes.insert(
            answer.correlation_id.clone(),
            answer.result.clone().expect("a result"),
        );
        assert!(
            previous.is_none(),
            "record {} answered twice",
            answer.correlation_id
        );
        if outcomes.len() == 2_000 && !restarted {
            broker.stop();
            tokio::time::sleep(downtime).await;
            broker.restart();
            restarted = true;
        }
    }
    feeder.await.unwrap();
    assert!(restarted);

    use proto::publish_stream_response::Result as Outcome;
    let mut acked = std::collections::HashMap::new();
    for (id, outcome) in &outcomes {
        match outcome {
            Outcome::Ack(ack) => {
                let other = acked.insert((ack.partition, ack.offset), id.clone());
                assert!(
                    other.is_none(),
                    "records {id} and {other:?} acknowledged at one position"
                );
            }
            Outcome::Error(e) => assert_eq!(
                e.code,
                tonic::Code::Unavailable as i32,
                "record {id}: {}",
                e.message
            ),
        }
    }
    assert!(
        acked.len() >= 2_000,
        "only {} records acknowledged",
        acked.len()
    );
    let unavailable = RECORDS - acked.len();
    eprintln!(
        "broker restart: {} acknowledged, {unavailable} UNAVAILABLE",
        acked.len()
    );

    // The same gateway publishes again once the broker is back.
    let mut unary = gw.publisher().await;
    let again = tokio::time::timeout(PATIENCE, async {
        loop {
            let request = proto::PublishRequest {
                topic: topic.clone(),
                records: vec![record(None, "after")],
            };
            match unary.publish(request).await {
                Ok(response) => break response.into_inner(),
                Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("publishing works again after the restart");
    assert_eq!(again.results.len(), 1);

    // Every acknowledged record is in the topic, with its own value.
    let mut subscriber = gw.subscriber().await;
    let mut stream = subscribe(
        &mut subscriber,
        partitions_request(&topic, StartPosition::Earliest),
    )
    .await;
    let mut found = 0;
    while found < acked.len() {
        let record = next_record(&mut stream).await;
        if let Some(id) = acked.get(&(record.partition, record.offset)) {
            assert_eq!(
                &value_of(&record),
                id,
                "acknowledged position holds another record"
            );
            found += 1;
        }
    }
    gw.stop().await;
    (acked.len(), unavailable)
}

/// A TCP relay to the gateway that can go silent: it stops forwarding in both
/// directions without closing anything, as a crashed host or a cut network path.
struct Blackhole {
    addr: std::net::SocketAddr,
    silent: std::sync::Arc<tokio::sync::Notify>,
}

impl Blackhole {
    async fn to(target: std::net::SocketAddr) -> Blackhole {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = std::sync::Arc::new(tokio::sync::Notify::new());
        let on_silence = silent.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(target).await.unwrap();
                let on_silence = on_silence.clone();
                tokio::spawn(async move {
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = on_silence.notified() => {
                            // Keep both sockets open, never read or write again.
                            std::future::pending::<()>().await;
                        }
                    }
                });
            }
        });
        Blackhole { addr, silent }
    }

    fn go_silent(&self) {
        self.silent.notify_waiters();
    }
}

#[tokio::test]
async fn a_client_that_vanishes_without_closing_leaves_its_group() {
    let gw = TestGateway::start(&["--keepalive-interval", "1s", "--keepalive-timeout", "1s"]).await;
    let topic = topic(2).await;
    let group = unique("g");
    let mut publisher = gw.publisher().await;

    // One member through the relay, one direct.
    let relay = Blackhole::to(gw.addr).await;
    let channel = connect(relay.addr).await;
    let mut vanishing = SubscriberServiceClient::new(channel);
    let mut vanishing_stream = subscribe(
        &mut vanishing,
        group_request(&topic, &group, StartPosition::Earliest),
    )
    .await;
    let mut staying = gw.subscriber().await;
    let mut staying_stream = subscribe(
        &mut staying,
        group_request(&topic, &group, StartPosition::Earliest),
    )
    .await;

    // Both hold partitions once the staying member sees an assignment smaller than
    // the whole topic.
    let mut both_members = false;
    while !both_members {
        let event = tokio::time::timeout(PATIENCE, staying_stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(Event::Assigned(assigned)) = event.event {
            both_members = assigned.partitions.len() == 1;
        }
    }

    relay.go_silent();
    // The gateway's pings go unanswered, it closes the connection, the stream's
    // consumer leaves the group, and the staying member is given both partitions.
    // With Kafka's eager rebalancing the staying member first hears its partition
    // revoked, then gets both.
    let mut revoked = false;
    let taken_over = tokio::time::timeout(PATIENCE, async {
        loop {
            let event = staying_stream.message().await.unwrap().unwrap();
            match event.event {
                Some(Event::Revoked(_)) => revoked = true,
                Some(Event::Assigned(assigned)) if assigned.partitions.len() == 2 => break,
                _ => {}
            }
        }
    })
    .await;
    assert!(
        taken_over.is_ok(),
        "the vanished member kept its partitions"
    );
    assert!(revoked, "no revoked event before the new assignment");
    publish(
        &mut publisher,
        &topic,
        vec![record_at(0, "a"), record_at(1, "b")],
    )
    .await;
    let got = next_records(&mut staying_stream, 2).await;
    assert_eq!(
        got.iter().map(|r| r.partition).collect::<BTreeSet<_>>(),
        BTreeSet::from([0, 1])
    );
    drop(vanishing_stream.message());
    gw.stop().await;
}

#[tokio::test]
async fn a_slow_reader_keeps_gateway_memory_bounded() {
    const RECORDS: usize = 100_000;
    const RECORD_BYTES: usize = 1024;
    let topic = topic(1).await;
    let gateway = GatewayProcess::spawn(gateway_binary!(), &brokers(), &[]);
    let channel = gateway.channel().await;
    let mut publisher = PublisherServiceClient::new(channel.clone());
    let value = "x".repeat(RECORD_BYTES);
    for _ in 0..RECORDS / 1000 {
        publish(
            &mut publisher,
            &topic,
            (0..1000).map(|_| record(None, &value)).collect(),
        )
        .await;
    }
    let pid = gateway.child.id();
    let before = rss(pid);

    // The client reads a few records, then stops: 100 MiB wait in the broker.
    let mut subscriber = SubscriberServiceClient::new(channel);
    let mut stream = subscribe(
        &mut subscriber,
        partitions_request(&topic, StartPosition::Earliest),
    )
    .await;
    next_records(&mut stream, 10).await;
    let mut highest = before;
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        highest = highest.max(rss(pid));
    }
    let grown = highest.saturating_sub(before);
    eprintln!(
        "slow reader: gateway RSS grew {} KiB while {RECORDS} records of {RECORD_BYTES} B waited",
        grown / 1024
    );
    // Read-ahead is bounded (librdkafka's 8 MiB queue, the stream's buffer of 256
    // records, HTTP/2 windows); an unbounded path would hold the whole 100 MiB.
    assert!(
        grown < 48 * 1024 * 1024,
        "gateway memory grew by {} MiB",
        grown / (1024 * 1024)
    );
    // The stream still works once the client reads again.
    next_records(&mut stream, 100).await;
}
