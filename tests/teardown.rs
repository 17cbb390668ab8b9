//! Teardown: opening and closing many group subscriptions leaves no consumer and no
//! librdkafka thread behind, and no close hangs. Alone in its test binary, so the
//! thread count is this test's own whatever the test runner.

use kafka_gateway::transport::proto::{self, StartPosition};
use kafka_gateway_test_kit::*;

#[tokio::test]
async fn fifty_group_subscriptions_opened_and_closed_leave_no_consumer_or_thread() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(1).await;
    let mut publisher = gw.publisher().await;
    publish(&mut publisher, &topic, vec![record(None, "hello")]).await;
    let mut subscriber = gw.subscriber().await;

    let cycle = |subscriber: &mut proto::subscriber_service_client::SubscriberServiceClient<_>| {
        let request = group_request(&topic, &unique("g"), StartPosition::Earliest);
        let mut subscriber = subscriber.clone();
        async move {
            let mut stream = subscribe(&mut subscriber, request).await;
            // One record read means the consumer joined its group and was assigned.
            assert_eq!(value_of(&next_record(&mut stream).await), "hello");
        }
    };
    cycle(&mut subscriber).await;
    wait_until_no_consumers(&gw).await;
    let baseline = kafka_threads();

    for _ in 0..50 {
        cycle(&mut subscriber).await;
    }
    wait_until_no_consumers(&gw).await;
    assert_eq!(gw.consumers.live_consumers(), 0);
    assert_eq!(kafka_threads(), baseline, "librdkafka threads left behind");
    gw.stop().await;
}

/// librdkafka's threads in this process (they are named `rdk:...`).
fn kafka_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("rdk:"))
        .count()
}
