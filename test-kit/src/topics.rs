//! Topics on the broker, made and removed through the Kafka admin API rather
//! than the gateway, so that a test depends only on what it tests.

use crate::{broker::brokers, names::unique};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    ClientConfig,
};
use std::time::Duration;

fn admin(address: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", address)
        .create()
        .expect("admin client")
}

/// Creates `name` with `partitions` partitions on the test broker.
pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_on(&brokers(), name, partitions).await;
}

/// Creates `name` with `partitions` partitions on the broker at `address`.
pub async fn create_topic_on(address: &str, name: &str, partitions: i32) {
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = admin(address)
        .create_topics(
            &[topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics");
    for result in results {
        result.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// A new topic with a unique name on the test broker.
pub async fn topic(partitions: i32) -> String {
    let name = unique("t");
    create_topic(&name, partitions).await;
    name
}

/// Deletes `topic` from the broker at `address`, reporting rather than failing
/// when it cannot: a broker with memory storage keeps every record of every
/// topic, and gigabytes of old topics slow later benchmark scenarios down.
pub async fn delete_topic_on(address: &str, topic: &str) {
    match admin(address)
        .delete_topics(&[topic], &AdminOptions::new())
        .await
        .as_deref()
    {
        Ok([Ok(_)]) => {}
        Ok(results) => eprintln!("topic {topic} not deleted: {results:?}"),
        Err(err) => eprintln!("topic {topic} not deleted: {err}"),
    }
}
