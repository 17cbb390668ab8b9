//! gRPC clients of the gateway: connecting, and the calls and stream reads that
//! tests make over and over, each failing loudly with what went wrong.

use crate::PATIENCE;
use kafka_gateway::transport::proto::{
    self, publisher_service_client::PublisherServiceClient,
    subscriber_service_client::SubscriberServiceClient,
};
use std::{net::SocketAddr, time::Duration};
use tonic::{
    transport::{Channel, Endpoint},
    Streaming,
};

/// The endpoint of a gateway at `addr`, to tune (windows, say) before connecting.
pub fn endpoint(addr: SocketAddr) -> Endpoint {
    Channel::from_shared(format!("http://{addr}")).unwrap()
}

/// A channel to a gateway that already listens.
pub async fn connect(addr: SocketAddr) -> Channel {
    endpoint(addr).connect().await.expect("connect to gateway")
}

/// A channel to `endpoint` once it listens: a child process takes a while to.
pub async fn connect_when_listening(endpoint: Endpoint) -> Channel {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(channel) = endpoint.connect().await {
                break channel;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the gateway listens")
}

/// Publishes `records` to `topic`; panics on error.
pub async fn publish(
    client: &mut PublisherServiceClient<Channel>,
    topic: &str,
    records: Vec<proto::Record>,
) -> Vec<proto::RecordResult> {
    client
        .publish(proto::PublishRequest {
            topic: topic.into(),
            records,
        })
        .await
        .unwrap_or_else(|s| panic!("publish to {topic}: {s:?}"))
        .into_inner()
        .results
}

/// Opens a Subscribe stream; panics on error.
pub async fn subscribe(
    client: &mut SubscriberServiceClient<Channel>,
    request: proto::SubscribeRequest,
) -> Streaming<proto::SubscribeResponse> {
    client
        .subscribe(request)
        .await
        .unwrap_or_else(|s| panic!("subscribe: {s:?}"))
        .into_inner()
}

/// The next event of a stream that is a record, skipping control events
/// (assignments, the started id), waiting at most `PATIENCE`.
pub async fn next_record(
    stream: &mut Streaming<proto::SubscribeResponse>,
) -> proto::ConsumedRecord {
    record_within(stream, PATIENCE)
        .await
        .expect("a record within PATIENCE")
}

/// The next `n` records of a stream.
pub async fn next_records(
    stream: &mut Streaming<proto::SubscribeResponse>,
    n: usize,
) -> Vec<proto::ConsumedRecord> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next_record(stream).await);
    }
    out
}

/// The next record within `wait`, skipping control events; `None` if none came.
/// For "nothing more arrives" checks, which pass on a slow machine too (a slow
/// machine only delays records).
pub async fn record_within(
    stream: &mut Streaming<proto::SubscribeResponse>,
    wait: Duration,
) -> Option<proto::ConsumedRecord> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => return None,
            Ok(Ok(Some(proto::SubscribeResponse {
                event: Some(proto::subscribe_response::Event::Record(record)),
            }))) => return Some(record),
            Ok(Ok(Some(proto::SubscribeResponse { event: Some(_) }))) => continue,
            Ok(other) => panic!("expected a record or nothing, got {other:?}"),
        }
    }
}

/// Asserts that no further record arrives for a while: a check that can only pass
/// wrongly on a slow machine, never fail wrongly.
pub async fn assert_no_more_records(stream: &mut Streaming<proto::SubscribeResponse>) {
    if let Some(record) = record_within(stream, Duration::from_millis(500)).await {
        panic!("unexpected record {record:?}");
    }
}
