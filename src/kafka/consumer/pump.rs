//! The task that moves records from one Kafka consumer into one subscription's
//! buffer, commits for group subscriptions, and tears the consumer down.

use super::{
    offsets::CommitTracker,
    readahead::{Refused, Sender, TaggedRecord},
    task::{stream_error, teardown, BURST},
};
use crate::{
    domain::{ConsumedRecord, TopicName, TopicPartition},
    kafka::{self, record},
};
use futures::{FutureExt, StreamExt};
use rdkafka::{
    consumer::{Consumer, ConsumerContext, StreamConsumer},
    message::BorrowedMessage,
    Message, TopicPartitionList,
};
use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
    time::Duration,
};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How long a record may wait for room in a full stream buffer before its
/// partition is paused. A client that is only momentarily behind catches up within
/// it, and the consumer keeps its prefetched records (pausing drops them); a client
/// that stopped reading gets its partitions paused, so the consumer is polled again
/// and its group can rebalance (which waits for at most this long).
const PAUSE_AFTER: Duration = Duration::from_millis(500);

/// Group subscriptions commit delivered offsets on an interval.
pub(super) struct Commits {
    pub delivered: Arc<CommitTracker>,
    pub interval: Duration,
}

/// One consumer feeding one subscription.
pub(super) struct Pump<C: ConsumerContext + 'static> {
    pub consumer: StreamConsumer<C>,
    pub topics: Vec<TopicName>,
    pub records: Sender,
    pub shutdown: CancellationToken,
    pub commits: Option<Commits>,
}

impl<C: ConsumerContext + 'static> Pump<C> {
    /// Runs until the client goes away, the gateway shuts down or Kafka fails the
    /// subscription; then commits and destroys the consumer.
    ///
    /// The consumer must keep being polled, also while the client is behind: a
    /// consumer that is not polled stops taking part in its group's rebalances and is
    /// thrown out after `max.poll.interval.ms`. When the buffer is full, a batch of
    /// records waits here; if the client does not make room within [`PAUSE_AFTER`],
    /// the partitions of waiting records are paused (librdkafka drops what it
    /// prefetched for them and fetches again from after them on resume) and polling
    /// goes on. Everything resumes once the client caught up, so one batch ([`BURST`]
    /// records at most) and one record per partition wait beyond the buffer.
    pub async fn run(self) {
        let Pump {
            consumer,
            topics,
            records,
            shutdown,
            commits,
        } = self;
        let mut ticker = commits.as_ref().map(|c| {
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + c.interval, c.interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticker
        });
        let delivered = commits.map(|c| c.delivered);
        let mut waiting: VecDeque<TaggedRecord> = VecDeque::new();
        let mut paused: HashSet<TopicPartition> = HashSet::new();
        // Set while records wait for room in the buffer and nothing is paused yet.
        let mut stalled_at: Option<tokio::time::Instant> = None;
        // Records of one turn cross to the subscription as one batch.
        let most = BURST.min(records.batch_limit());
        let failure = {
            // Made once: a fresh wait per record registers and drops a waiter each
            // time, which profiles showed as a sixth of the pump's work; so does
            // `recv`, whose every call registers a waker slot.
            let mut messages = consumer.stream();
            let stopping = shutdown.cancelled();
            let gone = records.closed();
            tokio::pin!(stopping, gone);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stopping => break None,
                    _ = &mut gone => break None,
                    room = records.reserve(records.front_places(&waiting)), if !waiting.is_empty() => {
                        if records.send_reserved(room, &mut waiting).is_err() {
                            break None;
                        }
                        if waiting.is_empty() {
                            stalled_at = None;
                            resume(&consumer, &mut paused);
                        }
                    }
                    // The client is still behind: pause the partitions whose records
                    // wait, and go back to polling the consumer.
                    _ = sleep_until(stalled_at.map(|at| at + PAUSE_AFTER)), if stalled_at.is_some() && paused.is_empty() => {
                        for delivery in &waiting {
                            pause(&consumer, &delivery.record, &mut paused);
                        }
                    }
                    _ = tick(&mut ticker) => {
                        if let Some(delivered) = &delivered {
                            delivered.commit(&consumer);
                        }
                    }
                    // Not polled while records wait briefly for room; polled again
                    // once their partitions are paused.
                    next = messages.next(), if waiting.is_empty() || !paused.is_empty() => {
                        // Records librdkafka already holds go out in the same turn,
                        // as one batch: a wakeup per record halved the throughput.
                        let mut next = next;
                        let mut batch = Vec::new();
                        // A batch ends at the burst's record count, or when it
                        // takes half the read-ahead's places (large records).
                        let mut places = 0;
                        let mut taken = 0;
                        let mut end = None;
                        while let Some(item) = next.take() {
                            match item {
                                Ok(message) => {
                                    let record = record::consumed(&message, topic_of(&message, &topics));
                                    drop(message);
                                    let generation = delivered.as_ref().map_or(0, |d| d.generation(&record.topic, record.partition));
                                    let delivery = TaggedRecord { record, generation };
                                    if waiting.is_empty() {
                                        places += records.places(&delivery);
                                        batch.push(delivery);
                                    } else {
                                        // Paused already: this record's partition pauses too.
                                        pause(&consumer, &delivery.record, &mut paused);
                                        waiting.push_back(delivery);
                                    }
                                }
                                Err(err) => match stream_error(&err, &topics) {
                                    kafka::Error::Unavailable(msg) => warn!(%msg, "consumer error, retrying"),
                                    fatal => {
                                        end = Some(fatal.into());
                                        break;
                                    }
                                },
                            }
                            taken += 1;
                            if taken < most && places < records.batch_limit() && waiting.is_empty() {
                                next = messages.next().now_or_never().flatten();
                            }
                        }
                        if !batch.is_empty() {
                            match records.try_send(batch) {
                                Ok(()) => {}
                                Err(Refused::Full(batch)) => {
                                    waiting.extend(batch);
                                    stalled_at = Some(tokio::time::Instant::now());
                                }
                                Err(Refused::Closed) => break None,
                            }
                        }
                        if let Some(end) = end {
                            break Some(end);
                        }
                    }
                }
            }
        };
        if let Some(err) = failure {
            // Records read before the failure first, then the error, unless the
            // client leaves or the gateway stops meanwhile.
            let deliver = async {
                while !waiting.is_empty() {
                    let room = records.reserve(records.front_places(&waiting)).await;
                    if records.send_reserved(room, &mut waiting).is_err() {
                        return;
                    }
                }
                let _ = records.send_error(err);
            };
            tokio::select! {
                _ = deliver => {}
                _ = shutdown.cancelled() => {}
                _ = records.closed() => {}
            }
        }
        drop(records);
        teardown(consumer, delivered).await;
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn pause<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    record: &ConsumedRecord,
    paused: &mut HashSet<TopicPartition>,
) {
    if paused.insert(TopicPartition::new(record.topic.clone(), record.partition)) {
        let mut one = TopicPartitionList::with_capacity(1);
        one.add_partition(record.topic.as_str(), record.partition);
        if let Err(err) = consumer.pause(&one) {
            warn!(%err, topic = %record.topic, partition = record.partition, "cannot pause a partition");
        }
    }
}

fn resume<C: ConsumerContext>(consumer: &StreamConsumer<C>, paused: &mut HashSet<TopicPartition>) {
    if paused.is_empty() {
        return;
    }
    let mut all = TopicPartitionList::with_capacity(paused.len());
    for TopicPartition { topic, partition } in paused.drain() {
        all.add_partition(topic.as_str(), partition);
    }
    // Partitions revoked meanwhile are not assigned any more; resuming them is a
    // harmless no-op.
    if let Err(err) = consumer.resume(&all) {
        debug!(%err, "resume after catching up");
    }
}

/// The subscription's own name for a message's topic, which saves an allocation.
fn topic_of(message: &BorrowedMessage<'_>, topics: &[TopicName]) -> TopicName {
    // A consumer of one topic reads only that topic; the name lookup (a C string
    // checked for UTF-8, then compared) showed in profiles.
    if let [only] = topics {
        return only.clone();
    }
    topics
        .iter()
        .find(|t| t.as_str() == message.topic())
        .cloned()
        .unwrap_or_else(|| TopicName::trusted(message.topic()))
}
