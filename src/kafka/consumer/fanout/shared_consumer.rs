//! The shared consumer's task: one Kafka consumer behind every feed, whose
//! assignment follows the feeds wanted (incremental assign and unassign), with a
//! filler task per assigned partition.

use super::{
    feed::Feed,
    feed_filler::{fill_feed, stop_fillers, FeedFiller, Fillers},
    registry::{drop_feeds, Shared},
};
use crate::{
    domain::TopicName,
    domain::TopicPartition,
    kafka::consumer::task::{stream_error, teardown},
    kafka::{self, metadata::OffsetLookup},
    Error,
};
use futures::StreamExt;
use rdkafka::{
    consumer::{Consumer as _, DefaultConsumerContext, StreamConsumer},
    Message, Offset, TopicPartitionList,
};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The shared consumer's task: keeps its assignment equal to the feeds wanted, with
/// a filler task per partition (see [`fill_feed`]), and serves the consumer's
/// own queue, until no feed is left or the gateway stops.
pub(super) async fn run(shared: Arc<Shared>) {
    let consumer: Consumer = match shared
        .settings
        // Feeds start at explicit offsets; if retention deletes records under a
        // feed, its streams fail rather than silently jump.
        .feed_consumer()
        .create()
    {
        Ok(consumer) => Arc::new(consumer),
        Err(err) => {
            let err = Error::from(kafka::Error::client("consumer", err));
            let mut state = shared.lock();
            for (_, joined) in state.feeds.drain() {
                joined.feed.fail(err.clone());
            }
            state.running = false;
            return;
        }
    };
    let mut fillers = Fillers::new();
    // Set when the feeds wanted may have changed.
    let mut changed = true;
    // Made once, as in the pump: a fresh wait per record takes a lock each time.
    let stopping = shared.shutdown.cancelled();
    // What no partition queue takes: errors about no one partition.
    let mut events = consumer.stream();
    tokio::pin!(stopping);
    loop {
        if changed {
            if !reconcile(&shared, &consumer, &mut fillers).await {
                break;
            }
            changed = false;
        }
        tokio::select! {
            biased;
            _ = &mut stopping => {
                shared.lock().running = false;
                break;
            }
            _ = shared.wake.notified() => changed = true,
            Some(next) = events.next() => match next {
                // Every partition's queue is split off before it is assigned, so
                // no record comes here; one that did would race its filler.
                Ok(message) => {
                    warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), "a shared feed's record on the consumer's own queue, dropped");
                }
                Err(err) => {
                    let topics: Vec<TopicName> = fillers.keys().map(|key| key.topic.clone()).collect();
                    match stream_error(&err, &topics) {
                        kafka::Error::Unavailable(msg) => warn!(%msg, "shared consumer error, retrying"),
                        // Partitions report a lost position on their own queues; if
                        // one comes here, the feeds behind their partition's start
                        // lost theirs.
                        kafka::Error::PositionLost(msg) => {
                            let all: Vec<Arc<Feed>> = fillers.values().map(|f| f.feed.clone()).collect();
                            let lost = behind_start(&shared.offsets, &all).await;
                            let lost = if lost.is_empty() { all } else { lost };
                            drop_feeds(&shared, lost.iter(), &kafka::Error::PositionLost(msg).into());
                            changed = true;
                        }
                        // An error about no one partition: end the streams of every
                        // feed, which new subscriptions restart.
                        fatal => {
                            drop_feeds(&shared, fillers.values().map(|r| &r.feed), &fatal.into());
                            changed = true;
                        }
                    }
                }
            },
        }
    }
    drop(events);
    // `running` was cleared where the loop ended, under the lock a new stream takes:
    // clearing it here could hide a consumer task started meanwhile.
    // The partition queues hold the consumer; it is destroyed after the last.
    stop_fillers(fillers.into_values()).await;
    match Arc::try_unwrap(consumer) {
        Ok(consumer) => teardown(consumer, None).await,
        Err(_) => warn!("the shared consumer is still referenced; it closes on the runtime"),
    }
}

type Consumer = Arc<StreamConsumer<DefaultConsumerContext>>;

/// Brings the consumer's assignment in line with the feeds wanted: partitions no
/// feed wants are unassigned and their fillers stopped; new ones get their own
/// queue and a filler, then are assigned. Returns `false` when no feed is left,
/// after marking the consumer stopped (under the same lock a new stream takes, so
/// it then starts another).
async fn reconcile(shared: &Arc<Shared>, consumer: &Consumer, fillers: &mut Fillers) -> bool {
    let (gone, wanted): (Vec<FeedFiller>, Option<Vec<Arc<Feed>>>) = {
        let mut state = shared.lock();
        let gone_keys: Vec<TopicPartition> = fillers
            .iter()
            .filter(|(_, filler)| !state.holds(&filler.feed))
            .map(|(key, _)| key.clone())
            .collect();
        let gone = gone_keys
            .iter()
            .filter_map(|key| fillers.remove(key))
            .collect();
        let wanted = if state.feeds.is_empty() {
            state.running = false;
            None
        } else {
            Some(
                state
                    .feeds
                    .iter()
                    .filter(|(key, _)| !fillers.contains_key(*key))
                    .map(|(_, joined)| joined.feed.clone())
                    .collect(),
            )
        };
        (gone, wanted)
    };
    let Some(wanted) = wanted else {
        stop_fillers(gone).await;
        return false;
    };
    if !gone.is_empty() {
        let mut list = TopicPartitionList::new();
        for filler in &gone {
            list.add_partition(filler.feed.topic.as_str(), filler.feed.partition);
        }
        if let Some(Err(err)) = blocking(consumer, move |c| c.incremental_unassign(&list)).await {
            debug!(%err, "unassigning partitions nobody reads");
        }
        // A partition wanted again at once gets a new queue on the same librdkafka
        // queue, which the old one must be done with first.
        stop_fillers(gone).await;
    }
    let mut new = TopicPartitionList::new();
    let mut added = Vec::new();
    for feed in wanted {
        // Split before the assignment, so no record of it reaches the shared queue.
        let Some(queue) = consumer.split_partition_queue(feed.topic.as_str(), feed.partition)
        else {
            feed.fail(
                kafka::Error::Other(format!("no queue for {}/{}", feed.topic, feed.partition))
                    .into(),
            );
            continue;
        };
        if let Err(err) = new.add_partition_offset(
            feed.topic.as_str(),
            feed.partition,
            Offset::Offset(feed.next_offset()),
        ) {
            feed.fail(kafka::Error::Other(err.to_string()).into());
            continue;
        }
        let stop = CancellationToken::new();
        let task = tokio::spawn(fill_feed(shared.clone(), queue, feed.clone(), stop.clone()));
        fillers.insert(
            feed.topic_partition(),
            FeedFiller {
                feed: feed.clone(),
                stop,
                task,
            },
        );
        added.push(feed);
    }
    if new.count() > 0 {
        let assigned = blocking(consumer, move |c| c.incremental_assign(&new)).await;
        match assigned {
            Some(Ok(())) => {}
            Some(Err(err)) => drop_feeds(
                shared,
                added.iter(),
                &kafka::Error::from_kafka(&err, None).into(),
            ),
            None => drop_feeds(shared, added.iter(), &Error::ShuttingDown),
        }
    }
    true
}

/// Runs a consumer call that waits for librdkafka's main thread to answer on the
/// blocking pool, so a busy librdkafka never stalls a runtime thread; `None` when
/// the runtime is stopping.
async fn blocking<T: Send + 'static>(
    consumer: &Consumer,
    call: impl FnOnce(&StreamConsumer<DefaultConsumerContext>) -> T + Send + 'static,
) -> Option<T> {
    let consumer = consumer.clone();
    tokio::task::spawn_blocking(move || call(&consumer))
        .await
        .ok()
}

/// The feeds whose next offset retention has deleted (below the partition's
/// start), or none when the lookup fails.
async fn behind_start(offsets: &OffsetLookup, feeds: &[Arc<Feed>]) -> Vec<Arc<Feed>> {
    let partitions = feeds.iter().map(|feed| feed.topic_partition()).collect();
    match offsets.watermarks(partitions).await {
        Ok(marks) => feeds
            .iter()
            .zip(marks)
            .filter(|(feed, (low, _))| feed.next_offset() < *low)
            .map(|(feed, _)| feed.clone())
            .collect(),
        Err(err) => {
            warn!(%err, "cannot tell which shared feed lost its position");
            Vec::new()
        }
    }
}
