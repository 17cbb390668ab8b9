//! What the two kinds of consumer task share: a subscription's pump (one
//! consumer, one stream) and fan-out's shared consumer (many feeds). How many
//! records one turn takes, how a consumer's error reads, how a consumer is torn
//! down off the runtime.

use super::offsets::CommitTracker;
use crate::{domain::TopicName, kafka};
use rdkafka::{
    consumer::{ConsumerContext, StreamConsumer},
    error::KafkaError,
};
use std::{sync::Arc, time::Duration};
use tracing::{debug, warn};

/// Records moved in one turn of a consumer task at most, so that commits,
/// shutdown and a client that left are still seen promptly.
pub(super) const BURST: usize = 256;

/// When a consumer close has taken this long, say so in the log.
const SLOW_CLOSE: Duration = Duration::from_secs(15);

/// A consumer error as the stream's end, or [`kafka::Error::Unavailable`] for
/// the transient ones librdkafka recovers from by itself.
pub(super) fn stream_error(err: &KafkaError, topics: &[TopicName]) -> kafka::Error {
    let names = topics
        .iter()
        .map(TopicName::as_str)
        .collect::<Vec<_>>()
        .join(",");
    kafka::Error::from_kafka(err, Some(&names))
}

/// Commits what was delivered and destroys the consumer on the blocking pool.
///
/// Destroying a group consumer runs librdkafka's close: it revokes the partitions,
/// waits for in-flight commits and leaves the group, which takes a broker round
/// trip and must not stall a runtime thread. The final commit is asynchronous
/// because a synchronous one waits without a time limit when the group coordinator
/// is down; the close waits for it anyway, and for at most the session timeout.
pub(super) async fn teardown<C: ConsumerContext + 'static>(
    consumer: StreamConsumer<C>,
    delivered: Option<Arc<CommitTracker>>,
) {
    let mut closing = tokio::task::spawn_blocking(move || {
        if let Some(delivered) = &delivered {
            delivered.commit(&consumer);
        }
        drop(consumer);
    });
    let closed = match tokio::time::timeout(SLOW_CLOSE, &mut closing).await {
        Ok(closed) => closed,
        Err(_) => {
            warn!(after = ?SLOW_CLOSE, "a Kafka consumer is slow to close; is the group coordinator reachable?");
            closing.await
        }
    };
    if let Err(err) = closed {
        warn!(%err, "consumer teardown panicked");
    }
    debug!("consumer closed");
}
