//! Consumer-group Subscribe against the real broker: balancing, failover, resuming
//! after commits, and teardown that leaves nothing behind.

use kafka_gateway::transport::proto::{self, StartPosition};
use kafka_gateway_test_kit::*;
use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
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

/// Opens a Consume stream with `request` (client acks), then reads it in the
/// background like [`drain`], acknowledging every record once it got here: a
/// member that leaves commits only what its client received.
async fn drain_acking(
    member: &'static str,
    subscriber: &mut proto::subscriber_service_client::SubscriberServiceClient<
        tonic::transport::Channel,
    >,
    request: proto::SubscribeRequest,
    out: mpsc::UnboundedSender<(&'static str, proto::ConsumedRecord)>,
) -> tokio::task::JoinHandle<()> {
    let (acks, requests) = mpsc::unbounded_channel();
    acks.send(proto::ConsumeRequest {
        request: Some(proto::consume_request::Request::Subscribe(request)),
    })
    .unwrap();
    let mut stream = subscriber
        .consume(tokio_stream::wrappers::UnboundedReceiverStream::new(
            requests,
        ))
        .await
        .unwrap_or_else(|s| panic!("consume: {s:?}"))
        .into_inner();
    tokio::spawn(async move {
        while let Ok(Some(event)) = stream.message().await {
            if let Some(proto::consume_response::Event::Record(record)) = event.event {
                let position = proto::RecordPosition {
                    topic: record.topic.clone(),
                    partition: record.partition,
                    offset: record.offset,
                };
                let ack = proto::ConsumeRequest {
                    request: Some(proto::consume_request::Request::Ack(proto::ConsumeAck {
                        records: vec![position],
                    })),
                };
                if out.send((member, record)).is_err() || acks.send(ack).is_err() {
                    break;
                }
            }
        }
    })
}

/// What the members of a group have received: who got each (partition, offset).
#[derive(Default)]
struct Received {
    by: HashMap<(i32, i64), BTreeSet<&'static str>>,
}

impl Received {
    /// Takes records until `done` holds, each wait bounded by `PATIENCE`.
    async fn until(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<(&'static str, proto::ConsumedRecord)>,
        what: &str,
        mut done: impl FnMut(&Self) -> bool,
    ) {
        while !done(self) {
            let (member, record) = tokio::time::timeout(PATIENCE, events.recv())
                .await
                .unwrap_or_else(|_| panic!("no record came while waiting until {what}"))
                .expect("readers alive");
            self.by
                .entry((record.partition, record.offset))
                .or_default()
                .insert(member);
        }
    }

    fn count_of(&self, member: &str) -> usize {
        self.by.values().filter(|m| m.contains(member)).count()
    }

    /// Once a member reading every partition got the last record of each (it
    /// reads them in order), asserts that none of `published` is missing.
    async fn assert_all_read(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<(&'static str, proto::ConsumedRecord)>,
        published: &BTreeSet<(i32, i64)>,
    ) {
        let mut last: HashMap<i32, i64> = HashMap::new();
        for &(p, o) in published {
            let at = last.entry(p).or_insert(o);
            *at = (*at).max(o);
        }
        self.until(events, "the last record of every partition is read", |g| {
            last.iter().all(|(&p, &o)| g.by.contains_key(&(p, o)))
        })
        .await;
        let missing: Vec<_> = published
            .iter()
            .filter(|key| !self.by.contains_key(key))
            .collect();
        assert!(
            missing.is_empty(),
            "the group skipped {} of {} records published after its first Subscribe returned, first (partition, offset) {:?}",
            missing.len(),
            published.len(),
            &missing[..missing.len().min(10)]
        );
    }
}

/// Publishes a record to every partition at a time, until finished.
struct Writer {
    published: Arc<Mutex<Vec<(i32, i64)>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(
        mut publisher: proto::publisher_service_client::PublisherServiceClient<
            tonic::transport::Channel,
        >,
        topic: &str,
        partitions: i32,
    ) -> Writer {
        let published = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (published, stop, topic) = (published.clone(), stop.clone(), topic.to_string());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Acquire) {
                    n += 1;
                    let records = (0..partitions)
                        .map(|p| record_at(p, &format!("n-{n}")))
                        .collect();
                    let results = publish(&mut publisher, &topic, records).await;
                    published
                        .lock()
                        .unwrap()
                        .extend(results.iter().map(|r| (r.partition, r.offset)));
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        Writer {
            published,
            stop,
            task,
        }
    }

    /// Waits until at least `n` records are written.
    async fn written(&self, n: usize) {
        tokio::time::timeout(PATIENCE, async {
            while self.published.lock().unwrap().len() < n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("records are written");
    }

    /// Stops and returns every record written.
    async fn finish(self) -> BTreeSet<(i32, i64)> {
        self.stop.store(true, Ordering::Release);
        self.task.await.unwrap();
        let published = self.published.lock().unwrap();
        published.iter().copied().collect()
    }
}

/// A new LATEST group: nothing committed yet, so each partition's first owner
/// must fix where it starts (at the latest when its Subscribe returned) and every
/// later owner go on from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_latest_group_skips_nothing_published_after_its_subscribe_through_rebalances() {
    let gw = TestGateway::start(&[]).await;
    let partitions = 3;
    let topic = topic(partitions).await;
    let group = unique("g");
    let mut publisher = gw.publisher().await;
    // Written before the group's first Subscribe: LATEST leaves them out.
    let before = publish(
        &mut publisher,
        &topic,
        (0..partitions).map(|p| record_at(p, "before")).collect(),
    )
    .await;
    let (tx, mut events) = mpsc::unbounded_channel();
    let latest = proto::SubscribeRequest {
        ack_mode: proto::AckMode::Client as i32,
        ..group_request(&topic, &group, StartPosition::Latest)
    };
    let mut sub_a = gw.subscriber().await;
    let a = drain_acking("a", &mut sub_a, latest.clone(), tx.clone()).await;
    // From the moment A's Subscribe returned, through its first rebalance and
    // every one after it.
    let writer = Writer::start(publisher, &topic, partitions);
    let mut got = Received::default();
    got.until(&mut events, "A reads", |g| g.count_of("a") > 0)
        .await;

    // B joins, then C; then B leaves, then A: four rebalances while records flow.
    let mut sub_b = gw.subscriber().await;
    let b = drain_acking("b", &mut sub_b, latest.clone(), tx.clone()).await;
    got.until(&mut events, "B reads", |g| g.count_of("b") > 0)
        .await;
    let mut sub_c = gw.subscriber().await;
    let c = drain_acking("c", &mut sub_c, latest.clone(), tx.clone()).await;
    got.until(&mut events, "C reads", |g| g.count_of("c") > 0)
        .await;
    b.abort();
    let _ = b.await;
    let seen = got.by.len();
    got.until(&mut events, "more records after B left", |g| {
        g.by.len() > seen + 30
    })
    .await;
    a.abort();
    let _ = a.await;
    let from_c = got.count_of("c");
    got.until(&mut events, "C reads on after A left", |g| {
        g.count_of("c") > from_c + 30
    })
    .await;

    // C owns every partition now.
    let published = writer.finish().await;
    got.assert_all_read(&mut events, &published).await;
    for r in &before {
        assert!(
            !got.by.contains_key(&(r.partition, r.offset)),
            "a record from before the group's first Subscribe was read"
        );
    }
    c.abort();
    gw.stop().await;
}

/// A second member that joins a new LATEST group before the first one got its
/// partitions (both in the group's first rebalance): the group still starts at
/// the first member's Subscribe. A third one joins later, moving partitions
/// while records flow. Nobody leaves, so with automatic commits nothing handed
/// to a stream is lost with its client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_joining_a_new_latest_group_at_once_start_it_at_the_first_subscribe() {
    let gw = TestGateway::start(&[]).await;
    let partitions = 4;
    let topic = topic(partitions).await;
    let group = unique("g");
    let (tx, mut events) = mpsc::unbounded_channel();
    let latest = group_request(&topic, &group, StartPosition::Latest);
    let mut sub_a = gw.subscriber().await;
    let a = drain("a", subscribe(&mut sub_a, latest.clone()).await, tx.clone());
    let writer = Writer::start(gw.publisher().await, &topic, partitions);
    // Records on every partition before B's Subscribe, B's own start.
    writer.written(2 * partitions as usize).await;
    let mut sub_b = gw.subscriber().await;
    let b = drain("b", subscribe(&mut sub_b, latest.clone()).await, tx.clone());
    let mut got = Received::default();
    got.until(&mut events, "A and B read", |g| {
        g.count_of("a") > 0 && g.count_of("b") > 0
    })
    .await;
    let mut sub_c = gw.subscriber().await;
    let c = drain("c", subscribe(&mut sub_c, latest.clone()).await, tx.clone());
    got.until(&mut events, "C reads", |g| g.count_of("c") > 0)
        .await;
    let seen = got.by.len();
    got.until(&mut events, "more records after C joined", |g| {
        g.by.len() > seen + 30
    })
    .await;
    let published = writer.finish().await;
    got.assert_all_read(&mut events, &published).await;
    for member in [a, b, c] {
        member.abort();
    }
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
    let details = tonic_types::StatusExt::get_error_details(&refused);
    let info = details.error_info().expect("an ErrorInfo");
    assert_eq!(
        (info.reason.as_str(), info.metadata["group"].as_str()),
        ("GROUP_NOT_EMPTY", group.as_str())
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
