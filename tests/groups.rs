//! Consumer-group Subscribe against the real broker: balancing, failover, resuming
//! after commits, and teardown that leaves nothing behind.

mod common;

use common::*;
use kafka_gateway::transport::proto::{self, StartPosition};
use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};
use tokio::sync::mpsc;

/// Reads a stream in the background, tagging each record with `member`.
fn drain(
    member: &'static str,
    mut stream: tonic::Streaming<proto::SubscribeResponse>,
    out: mpsc::UnboundedSender<(&'static str, proto::ConsumedRecord)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(Some(event)) = stream.message().await {
            if let Some(proto::subscribe_response::Event::Record(record)) = event.event {
                if out.send((member, record)).is_err() {
                    break;
                }
            }
        }
    })
}

/// Publishes one record per partition for `round`, then waits until every one of
/// them reached a member; returns which member got each partition's record.
async fn round(
    publisher: &mut proto::publisher_service_client::PublisherServiceClient<
        tonic::transport::Channel,
    >,
    topic: &str,
    partitions: i32,
    round: usize,
    events: &mut mpsc::UnboundedReceiver<(&'static str, proto::ConsumedRecord)>,
) -> HashMap<i32, BTreeSet<&'static str>> {
    let records = (0..partitions)
        .map(|p| record_at(p, &format!("round-{round}")))
        .collect();
    publish(publisher, topic, records).await;
    let mut got: HashMap<i32, BTreeSet<&'static str>> = HashMap::new();
    while got.len() < partitions as usize {
        let (member, record) = tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("round records arrive")
            .expect("readers alive");
        if value_of(&record) == format!("round-{round}") {
            got.entry(record.partition).or_default().insert(member);
        }
    }
    got
}

#[tokio::test]
async fn two_members_split_partitions_and_the_survivor_takes_all() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(4).await;
    let group = unique("g");
    let mut publisher = gw.publisher().await;
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut sub_a = gw.subscriber().await;
    let mut sub_b = gw.subscriber().await;
    let a = drain(
        "a",
        subscribe(
            &mut sub_a,
            group_request(&topic, &group, StartPosition::Earliest),
        )
        .await,
        tx.clone(),
    );
    let b = drain(
        "b",
        subscribe(
            &mut sub_b,
            group_request(&topic, &group, StartPosition::Earliest),
        )
        .await,
        tx.clone(),
    );

    // Rounds until the group settled with both members holding partitions.
    let mut n = 0;
    let split = loop {
        n += 1;
        assert!(n < 200, "the two members never shared the partitions");
        let got = round(&mut publisher, &topic, 4, n, &mut events).await;
        let owners: BTreeSet<_> = got.values().flatten().copied().collect();
        if owners.len() == 2 && got.values().all(|m| m.len() == 1) {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let a_parts: BTreeSet<_> = split
        .iter()
        .filter(|(_, m)| m.contains("a"))
        .map(|(p, _)| *p)
        .collect();
    let b_parts: BTreeSet<_> = split
        .iter()
        .filter(|(_, m)| m.contains("b"))
        .map(|(p, _)| *p)
        .collect();
    assert!(a_parts.is_disjoint(&b_parts));
    assert_eq!(a_parts.len() + b_parts.len(), 4);

    // B's client goes away: its consumer leaves the group and A gets everything.
    b.abort();
    let _ = b.await;
    drop(sub_b);
    loop {
        n += 1;
        assert!(
            n < 400,
            "the surviving member never received all partitions"
        );
        let got = round(&mut publisher, &topic, 4, n, &mut events).await;
        if got.values().all(|m| m.len() == 1 && m.contains("a")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.abort();
    gw.stop().await;
}

#[tokio::test]
async fn a_new_member_resumes_after_committed_offsets() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(2).await;
    let group = unique("g");
    let mut publisher = gw.publisher().await;
    let first: Vec<_> = (0..10)
        .map(|i| record_at(i % 2, &format!("old-{i}")))
        .collect();
    publish(&mut publisher, &topic, first).await;

    let mut subscriber = gw.subscriber().await;
    let mut stream = subscribe(
        &mut subscriber,
        group_request(&topic, &group, StartPosition::Earliest),
    )
    .await;
    let got = next_records(&mut stream, 10).await;
    assert!(got.iter().all(|r| value_of(r).starts_with("old-")));
    drop(stream);
    wait_until_no_consumers(&gw).await;

    let second: Vec<_> = (0..6)
        .map(|i| record_at(i % 2, &format!("new-{i}")))
        .collect();
    publish(&mut publisher, &topic, second).await;
    let mut stream = subscribe(
        &mut subscriber,
        group_request(&topic, &group, StartPosition::Earliest),
    )
    .await;
    let got = next_records(&mut stream, 6).await;
    let values: BTreeSet<_> = got.iter().map(value_of).collect();
    assert_eq!(
        values,
        (0..6).map(|i| format!("new-{i}")).collect(),
        "committed records were read again"
    );
    assert_no_more_records(&mut stream).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_member_whose_client_stopped_reading_does_not_stall_its_group() {
    // A small buffer so the stalled stream's gateway side fills quickly.
    let gw = TestGateway::start(&["--subscribe-buffer", "4"]).await;
    let topic = topic(2).await;
    let group = unique("g");
    let mut publisher = gw.publisher().await;
    let big = "x".repeat(1024);
    for p in 0..2 {
        for _ in 0..3 {
            let batch = (0..1000).map(|_| record_at(p, &big)).collect();
            publish(&mut publisher, &topic, batch).await;
        }
    }
    // A reads one record and then stops reading, holding its stream open: the
    // gRPC flow-control windows and the gateway's buffer fill up.
    let mut sub_a = gw.subscriber().await;
    let mut stalled = subscribe(
        &mut sub_a,
        group_request(&topic, &group, StartPosition::Earliest),
    )
    .await;
    next_record(&mut stalled).await;

    // B joins. The rebalance needs A's consumer to take part, which it only does
    // while the gateway keeps polling it.
    let mut sub_b = gw.subscriber().await;
    let mut stream_b = subscribe(
        &mut sub_b,
        group_request(&topic, &group, StartPosition::Earliest),
    )
    .await;
    let got = next_record(&mut stream_b).await;
    assert_eq!(got.value.as_deref().map(<[u8]>::len), Some(1024));
    drop(stalled);
    gw.stop().await;
}

#[tokio::test]
async fn reset_offsets_moves_an_idle_group_and_refuses_an_active_one() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(1).await;
    let group = unique("g");
    let mut publisher = gw.publisher().await;
    publish(&mut publisher, &topic, numbered(10)).await;
    let mut subscriber = gw.subscriber().await;

    // The group reads everything and commits it.
    let mut stream = subscribe(
        &mut subscriber,
        group_request(&topic, &group, StartPosition::Earliest),
    )
    .await;
    next_records(&mut stream, 10).await;

    // While it has a member, Kafka takes no reset.
    let reset = |position: StartPosition, offsets: Vec<proto::PartitionOffset>| {
        proto::ResetOffsetsRequest {
            group_id: group.clone(),
            topic: topic.clone(),
            position: position as i32,
            offsets,
            timestamp: None,
        }
    };
    let refused = subscriber
        .reset_offsets(reset(StartPosition::Earliest, vec![]))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    drop(stream);
    wait_until_no_consumers(&gw).await;

    // Idle: back to the beginning, and the group reads everything again.
    let resetter = subscriber.clone();
    let reset_to = |position, offsets| {
        let mut subscriber = resetter.clone();
        let request = reset(position, offsets);
        async move {
            // The departed member may still be leaving; Kafka refuses until it left.
            tokio::time::timeout(PATIENCE, async {
                loop {
                    match subscriber.reset_offsets(request.clone()).await {
                        Ok(response) => break response.into_inner().offsets,
                        Err(status) => {
                            assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}")
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await
            .expect("the group becomes idle")
        }
    };
    let offsets = reset_to(StartPosition::Earliest, vec![]).await;
    assert_eq!(
        offsets
            .iter()
            .map(|o| (o.partition, o.offset))
            .collect::<Vec<_>>(),
        [(0, 0)]
    );
    let mut stream = subscribe(
        &mut subscriber,
        group_request(&topic, &group, StartPosition::Latest),
    )
    .await;
    assert_eq!(next_records(&mut stream, 10).await[0].offset, 0);
    drop(stream);
    wait_until_no_consumers(&gw).await;

    let at_seven = vec![proto::PartitionOffset {
        topic: String::new(),
        partition: 0,
        offset: 7,
    }];
    reset_to(StartPosition::Offset, at_seven).await;
    let mut stream = subscribe(
        &mut subscriber,
        group_request(&topic, &group, StartPosition::Latest),
    )
    .await;
    let again = next_records(&mut stream, 3).await;
    assert_eq!(
        again.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [7, 8, 9]
    );
    assert_no_more_records(&mut stream).await;
    gw.stop().await;
}
