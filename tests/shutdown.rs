//! Graceful shutdown: in-flight publishes finish, streams end with a status,
//! delivered offsets are committed.

mod common;

use common::*;
use kafka_gateway::transport::proto::{self, StartPosition};
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
