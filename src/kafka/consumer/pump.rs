//! The task that moves records from one Kafka consumer into one subscription's
//! buffer, commits for group subscriptions, and tears the consumer down.

use super::{offsets::DeliveredOffsets, LiveConsumer};
use crate::{
    domain::{ConsumedRecord, Header, TopicName},
    kafka::{record_timestamp, Error},
};
use bytes::Bytes;
use rdkafka::{
    consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer},
    message::{BorrowedMessage, Headers},
    Message,
};
use std::{sync::Arc, time::Duration};
use tokio::{sync::mpsc, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// When a consumer close has taken this long, say so in the log.
const SLOW_CLOSE: Duration = Duration::from_secs(15);

/// Group subscriptions commit delivered offsets on an interval.
pub(super) struct Commits {
    pub delivered: Arc<DeliveredOffsets>,
    pub interval: Duration,
}

/// One consumer feeding one subscription.
pub(super) struct Pump<C: ConsumerContext + 'static> {
    pub consumer: StreamConsumer<C>,
    pub topics: Vec<TopicName>,
    pub records: mpsc::Sender<Result<ConsumedRecord, Error>>,
    pub shutdown: CancellationToken,
    pub commits: Option<Commits>,
    pub live: LiveConsumer,
}

impl<C: ConsumerContext + 'static> Pump<C> {
    /// Runs until the client goes away, the gateway shuts down or Kafka fails the
    /// subscription; then commits and destroys the consumer.
    pub async fn run(self) {
        let Pump {
            consumer,
            topics,
            records,
            shutdown,
            commits,
            live,
        } = self;
        let mut ticker = tokio::time::interval(
            commits
                .as_ref()
                .map_or(Duration::from_secs(3600), |c| c.interval),
        );
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = records.closed() => break,
                _ = ticker.tick(), if commits.is_some() => {
                    if let Some(c) = &commits {
                        commit(&consumer, &c.delivered, CommitMode::Async);
                    }
                }
                next = consumer.recv() => match next {
                    Ok(message) => {
                        let record = to_record(&message, &topics);
                        drop(message);
                        // Waiting here is the backpressure: a slow client stops the
                        // reads, and librdkafka's bounded read-ahead fills and pauses.
                        let sent = tokio::select! {
                            sent = records.send(Ok(record)) => sent.is_ok(),
                            _ = shutdown.cancelled() => false,
                        };
                        if !sent {
                            break;
                        }
                    }
                    Err(err) => {
                        let err = Error::from_kafka(&err, None);
                        if let Error::Unavailable(_) = err {
                            // librdkafka reconnects by itself; the stream waits.
                            warn!(%err, "consumer error, retrying");
                            continue;
                        }
                        let _ = records.try_send(Err(err));
                        break;
                    }
                }
            }
        }
        drop(records);
        teardown(consumer, commits.map(|c| c.delivered), live).await;
    }
}

/// Commits what was delivered and destroys the consumer on the blocking pool.
///
/// Destroying a group consumer runs librdkafka's close: it revokes the partitions,
/// waits for in-flight commits and leaves the group, which takes a broker round
/// trip and must not stall a runtime thread. The final commit is asynchronous
/// because a synchronous one waits without a time limit when the group coordinator
/// is down; the close waits for it anyway, and for at most the session timeout.
async fn teardown<C: ConsumerContext + 'static>(
    consumer: StreamConsumer<C>,
    delivered: Option<Arc<DeliveredOffsets>>,
    live: LiveConsumer,
) {
    let mut closing = tokio::task::spawn_blocking(move || {
        if let Some(delivered) = &delivered {
            commit(&consumer, delivered, CommitMode::Async);
        }
        drop(consumer);
        drop(live);
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

fn commit<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    delivered: &DeliveredOffsets,
    mode: CommitMode,
) {
    if let Some(offsets) = delivered.take() {
        if let Err(err) = consumer.commit(&offsets, mode) {
            warn!(%err, "offset commit failed");
            delivered.restore(&offsets);
        }
    }
}

fn to_record(message: &BorrowedMessage<'_>, topics: &[TopicName]) -> ConsumedRecord {
    let topic = topics
        .iter()
        .find(|t| t.as_str() == message.topic())
        .cloned()
        .or_else(|| TopicName::new(message.topic()).ok())
        .unwrap_or_else(|| topics[0].clone());
    let headers = message.headers().map_or_else(Vec::new, |headers| {
        headers
            .iter()
            .map(|h| Header {
                key: h.key.to_string(),
                value: h.value.map(Bytes::copy_from_slice),
            })
            .collect()
    });
    ConsumedRecord {
        topic,
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(Bytes::copy_from_slice),
        value: message.payload().map(Bytes::copy_from_slice),
        headers,
        timestamp: record_timestamp(message.timestamp()),
    }
}
