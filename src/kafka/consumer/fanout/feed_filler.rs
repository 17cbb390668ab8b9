//! The filler task of one partition of the shared consumer: it moves records from
//! the partition's own librdkafka queue into its feed.

use super::{
    feed::Feed,
    registry::{drop_feeds, Shared},
};
use crate::{
    domain::TopicPartition,
    kafka::consumer::task::{stream_error, BURST},
    kafka::{self, record},
};
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{stream_consumer::StreamPartitionQueue, DefaultConsumerContext};
use std::{collections::HashMap, sync::Arc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// A partition the shared consumer is assigned, and its filler task.
pub(super) struct FeedFiller {
    pub(super) feed: Arc<Feed>,
    pub(super) stop: CancellationToken,
    pub(super) task: JoinHandle<()>,
}

/// Stops filler tasks and waits until they are done with their queues.
pub(super) async fn stop_fillers(fillers: impl IntoIterator<Item = FeedFiller>) {
    let tasks: Vec<JoinHandle<()>> = fillers
        .into_iter()
        .map(|filler| {
            filler.stop.cancel();
            filler.task
        })
        .collect();
    for task in tasks {
        if let Err(err) = task.await {
            warn!(%err, "a shared feed's filler panicked");
        }
    }
}

pub(super) type Fillers = HashMap<TopicPartition, FeedFiller>;

/// Moves records from one partition's own queue into its feed. While the feed is
/// full it stops taking them: librdkafka then holds what it fetched and stops
/// fetching the partition once its read-ahead is full, and the other partitions go
/// on. (Pausing the partition instead made librdkafka drop what it had fetched and
/// fetch it again, sometimes a second later.)
pub(super) async fn fill_feed(
    shared: Arc<Shared>,
    queue: StreamPartitionQueue<DefaultConsumerContext>,
    feed: Arc<Feed>,
    stop: CancellationToken,
) {
    // A filler that ends other than by its stop (a panic) ends its feed's streams
    // rather than leave them waiting.
    let mut guard = EndsFeed {
        shared: &shared,
        feed: &feed,
        armed: true,
    };
    let room = feed.room();
    let mut messages = queue.stream();
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let topics = [feed.topic.clone()];
    loop {
        if feed.full() {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                _ = room.notified() => continue,
            }
        }
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            Some(next) = messages.next() => {
                // Records librdkafka already holds are appended in the same turn.
                let mut next = Some(next);
                let mut taken = 0;
                while let Some(item) = next.take() {
                    match item {
                        Ok(message) => {
                            if feed.push(record::consumed(&message, feed.topic.clone())) {
                                break;
                            }
                        }
                        Err(err) => match stream_error(&err, &topics) {
                            kafka::Error::Unavailable(msg) => {
                                warn!(%msg, topic = %feed.topic, partition = feed.partition, "shared consumer error, retrying");
                                break;
                            }
                            // A lost position or another error of this partition ends
                            // its feed only.
                            fatal => {
                                guard.armed = false;
                                drop_feeds(&shared, std::iter::once(&feed), &fatal.into());
                                return;
                            }
                        },
                    }
                    taken += 1;
                    if taken < BURST {
                        next = messages.next().now_or_never().flatten();
                    }
                }
            }
        }
    }
    guard.armed = false;
    // Stopped, after the partition was unassigned: librdkafka does not empty a
    // queue nobody reads, and the next filler of this partition would get what is
    // left (errors included) before its own records.
    while messages.next().now_or_never().flatten().is_some() {}
}

/// Ends a feed's streams when its filler stops unexpectedly.
struct EndsFeed<'a> {
    shared: &'a Arc<Shared>,
    feed: &'a Arc<Feed>,
    armed: bool,
}

impl Drop for EndsFeed<'_> {
    fn drop(&mut self) {
        if self.armed {
            drop_feeds(
                self.shared,
                std::iter::once(self.feed),
                &kafka::Error::Other(format!(
                    "the filler of {}/{} stopped",
                    self.feed.topic, self.feed.partition
                ))
                .into(),
            );
        }
    }
}
