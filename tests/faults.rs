//! Faults: a gateway killed with SIGKILL loses no acknowledged progress and no
//! unacknowledged record.

mod common;

use common::*;
use kafka_gateway::transport::proto::{
    self, publisher_service_client::PublisherServiceClient, subscribe_response::Event,
    subscriber_service_client::SubscriberServiceClient, AckMode, StartPosition,
};
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
    let gateway = GatewayProcess::spawn(&["--commit-interval", "200ms"]);
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
