//! Fan-out: subscriptions without a group that read the same partitions share one
//! Kafka consumer per gateway, so a live feed with thousands of watchers costs one
//! fetch from Kafka and a cursor per stream.
//!
//! A stream joins the partitions' [`Feed`]s when every one of them still holds its
//! start offset (a new feed starts where the first stream asked); otherwise it gets
//! a consumer of its own, as do EARLIEST and group subscriptions. One consumer
//! serves every feed: a task reconciles its assignment with the feeds wanted
//! (incremental assign and unassign), and each assigned partition has its own
//! librdkafka queue, drained into its feed by a reader task of its own. It stops
//! when the last feed goes and starts again with the next.

use super::{
    feed::{poll_cursors, Cursor, Feed},
    task::{stream_error, teardown, BURST},
};
use crate::{
    domain::{ConsumedRecord, TopicName},
    kafka::{self, metadata::OffsetLookup, record, KafkaSettings},
    Error,
};
use futures::{FutureExt, StreamExt};
use rdkafka::{
    consumer::{
        stream_consumer::StreamPartitionQueue, Consumer as _, DefaultConsumerContext,
        StreamConsumer,
    },
    Message, Offset, TopicPartitionList,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, warn};

type Key = (TopicName, i32);

/// The registry of live feeds and the consumer behind them.
pub(super) struct FanOut {
    shared: Arc<Shared>,
}

struct Shared {
    settings: KafkaSettings,
    /// Finds which feeds lost their position when the consumer reports one lost.
    offsets: OffsetLookup,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    state: Mutex<State>,
    /// Wakes the consumer task: the feeds wanted changed.
    wake: Arc<Notify>,
}

#[derive(Default)]
struct State {
    feeds: HashMap<Key, Joined>,
    /// Streams reading feeds now.
    streams: usize,
    next_reader: u64,
    /// A consumer task runs.
    running: bool,
}

struct Joined {
    feed: Arc<Feed>,
    readers: usize,
}

impl State {
    /// Whether `feed` is still the one wanted for its partition (a failed feed was
    /// removed, and maybe replaced by a new one).
    fn holds(&self, feed: &Arc<Feed>) -> bool {
        self.feeds
            .get(&(feed.topic.clone(), feed.partition))
            .is_some_and(|joined| Arc::ptr_eq(&joined.feed, feed))
    }
}

impl FanOut {
    pub fn new(
        settings: &KafkaSettings,
        offsets: OffsetLookup,
        shutdown: CancellationToken,
    ) -> FanOut {
        FanOut {
            shared: Arc::new(Shared {
                settings: settings.clone(),
                offsets,
                shutdown,
                tasks: TaskTracker::new(),
                state: Mutex::new(State::default()),
                wake: Arc::new(Notify::new()),
            }),
        }
    }

    /// Shared consumers alive now (one, or none while no stream reads a feed),
    /// including one still closing.
    pub fn consumers(&self) -> usize {
        self.shared.tasks.len()
    }

    /// Streams reading feeds now.
    pub fn streams(&self) -> usize {
        self.shared.lock().streams
    }

    /// Waits until the shared consumer is destroyed, after shutdown.
    pub async fn closed(&self) {
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }

    /// Joins the feeds of `assignment` (topic, partition, start offset), or returns
    /// `None` when a feed no longer reaches back to a start offset, or when it would
    /// need more feeds than `--max-shared-partitions`.
    pub fn join(&self, assignment: &[(TopicName, i32, i64)]) -> Result<Option<FeedReader>, Error> {
        let shared = &self.shared;
        let mut state = shared.lock();
        if state.streams >= shared.settings.max_shared_streams {
            return Err(Error::Overloaded {
                message: format!(
                    "this gateway already serves {} shared Subscribe streams (--max-shared-streams); retry later or on another instance",
                    shared.settings.max_shared_streams
                ),
                limit: shared.settings.max_shared_streams,
            });
        }
        // Feeds are bounded in number too: past the limit, a stream that needs a new
        // one reads with a consumer of its own.
        let new_feeds = assignment
            .iter()
            .filter(|(topic, partition, _)| !state.feeds.contains_key(&(topic.clone(), *partition)))
            .count();
        if state.feeds.len() + new_feeds > shared.settings.max_shared_partitions {
            return Ok(None);
        }
        let mut cursors: Vec<(Arc<Feed>, Cursor)> = Vec::with_capacity(assignment.len());
        for (topic, partition, start) in assignment {
            let feed = match state.feeds.get(&(topic.clone(), *partition)) {
                Some(joined) => joined.feed.clone(),
                None => Arc::new(Feed::new(
                    topic.clone(),
                    *partition,
                    *start,
                    shared.settings.fanout_buffer_bytes,
                    Arc::new(Notify::new()),
                )),
            };
            match feed.cursor(*start) {
                Some(cursor) => cursors.push((feed, cursor)),
                None => return Ok(None),
            }
        }
        let mut added = false;
        for (feed, cursor) in &cursors {
            feed.claim(cursor);
            let joined = state
                .feeds
                .entry((feed.topic.clone(), feed.partition))
                .or_insert_with(|| {
                    added = true;
                    Joined {
                        feed: feed.clone(),
                        readers: 0,
                    }
                });
            joined.readers += 1;
        }
        state.streams += 1;
        let id = state.next_reader;
        state.next_reader += 1;
        if added {
            if state.running {
                shared.wake.notify_one();
            } else {
                state.running = true;
                shared.tasks.spawn(run(shared.clone()));
            }
        }
        Ok(Some(FeedReader {
            shared: shared.clone(),
            id,
            cursors,
            turn: 0,
        }))
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fan-out lock")
    }
}

/// One stream's place in the feeds it reads.
pub(super) struct FeedReader {
    shared: Arc<Shared>,
    id: u64,
    cursors: Vec<(Arc<Feed>, Cursor)>,
    turn: usize,
}

impl FeedReader {
    /// The next record of any of the stream's partitions.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<ConsumedRecord, Error>> {
        poll_cursors(&mut self.cursors, &mut self.turn, self.id, cx)
    }
}

impl Drop for FeedReader {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let mut removed = false;
        for (feed, _) in &self.cursors {
            feed.forget(self.id);
            // A feed that failed was replaced or removed; its count is gone.
            let key = (feed.topic.clone(), feed.partition);
            let Some(joined) = state
                .feeds
                .get_mut(&key)
                .filter(|joined| Arc::ptr_eq(&joined.feed, feed))
            else {
                continue;
            };
            joined.readers -= 1;
            if joined.readers == 0 {
                state.feeds.remove(&key);
                removed = true;
            }
        }
        state.streams -= 1;
        if removed {
            self.shared.wake.notify_one();
        }
    }
}

/// The shared consumer's task: keeps its assignment equal to the feeds wanted, with
/// a reader task per partition (see [`read_partition`]), and serves the consumer's
/// own queue, until no feed is left or the gateway stops.
async fn run(shared: Arc<Shared>) {
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
    let mut readers = Readers::new();
    // Set when the feeds wanted may have changed.
    let mut changed = true;
    // Made once, as in the pump: a fresh wait per record takes a lock each time.
    let stopping = shared.shutdown.cancelled();
    // What no partition queue takes: errors about no one partition.
    let mut events = consumer.stream();
    tokio::pin!(stopping);
    loop {
        if changed {
            if !reconcile(&shared, &consumer, &mut readers).await {
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
                // no record comes here; one that did would race its reader.
                Ok(message) => {
                    warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), "a shared feed's record on the consumer's own queue, dropped");
                }
                Err(err) => {
                    let topics: Vec<TopicName> = readers.keys().map(|(t, _)| t.clone()).collect();
                    match stream_error(&err, &topics) {
                        kafka::Error::Unavailable(msg) => warn!(%msg, "shared consumer error, retrying"),
                        // Partitions report a lost position on their own queues; if
                        // one comes here, the feeds behind their partition's start
                        // lost theirs.
                        kafka::Error::PositionLost(msg) => {
                            let all: Vec<Arc<Feed>> = readers.values().map(|r| r.feed.clone()).collect();
                            let lost = behind_start(&shared.offsets, &all).await;
                            let lost = if lost.is_empty() { all } else { lost };
                            drop_feeds(&shared, lost.iter(), &kafka::Error::PositionLost(msg).into());
                            changed = true;
                        }
                        // An error about no one partition: end the streams of every
                        // feed, which new subscriptions restart.
                        fatal => {
                            drop_feeds(&shared, readers.values().map(|r| &r.feed), &fatal.into());
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
    stop_readers(readers.into_values()).await;
    match Arc::try_unwrap(consumer) {
        Ok(consumer) => teardown(consumer, None).await,
        Err(_) => warn!("the shared consumer is still referenced; it closes on the runtime"),
    }
}

type Consumer = Arc<StreamConsumer<DefaultConsumerContext>>;

/// A partition the shared consumer is assigned, and its reader task.
struct Reader {
    feed: Arc<Feed>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Stops reader tasks and waits until they are done with their queues.
async fn stop_readers(readers: impl IntoIterator<Item = Reader>) {
    let tasks: Vec<JoinHandle<()>> = readers
        .into_iter()
        .map(|reader| {
            reader.stop.cancel();
            reader.task
        })
        .collect();
    for task in tasks {
        if let Err(err) = task.await {
            warn!(%err, "a shared feed's reader panicked");
        }
    }
}

type Readers = HashMap<Key, Reader>;

/// Moves records from one partition's own queue into its feed. While the feed is
/// full it stops taking them: librdkafka then holds what it fetched and stops
/// fetching the partition once its read-ahead is full, and the other partitions go
/// on. (Pausing the partition instead made librdkafka drop what it had fetched and
/// fetch it again, sometimes a second later.)
async fn read_partition(
    shared: Arc<Shared>,
    queue: StreamPartitionQueue<DefaultConsumerContext>,
    feed: Arc<Feed>,
    stop: CancellationToken,
) {
    // A reader that ends other than by its stop (a panic) ends its feed's streams
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
    // queue nobody reads, and the next reader of this partition would get what is
    // left (errors included) before its own records.
    while messages.next().now_or_never().flatten().is_some() {}
}

/// Ends a feed's streams when its reader stops unexpectedly.
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
                    "the reader of {}/{} stopped",
                    self.feed.topic, self.feed.partition
                ))
                .into(),
            );
        }
    }
}

/// Brings the consumer's assignment in line with the feeds wanted: partitions no
/// feed wants are unassigned and their readers stopped; new ones get their own
/// queue and a reader, then are assigned. Returns `false` when no feed is left,
/// after marking the consumer stopped (under the same lock a new stream takes, so
/// it then starts another).
async fn reconcile(shared: &Arc<Shared>, consumer: &Consumer, readers: &mut Readers) -> bool {
    let (gone, wanted): (Vec<Reader>, Option<Vec<Arc<Feed>>>) = {
        let mut state = shared.lock();
        let gone_keys: Vec<Key> = readers
            .iter()
            .filter(|(_, reader)| !state.holds(&reader.feed))
            .map(|(key, _)| key.clone())
            .collect();
        let gone = gone_keys
            .iter()
            .filter_map(|key| readers.remove(key))
            .collect();
        let wanted = if state.feeds.is_empty() {
            state.running = false;
            None
        } else {
            Some(
                state
                    .feeds
                    .iter()
                    .filter(|(key, _)| !readers.contains_key(*key))
                    .map(|(_, joined)| joined.feed.clone())
                    .collect(),
            )
        };
        (gone, wanted)
    };
    let Some(wanted) = wanted else {
        stop_readers(gone).await;
        return false;
    };
    if !gone.is_empty() {
        let mut list = TopicPartitionList::new();
        for reader in &gone {
            list.add_partition(reader.feed.topic.as_str(), reader.feed.partition);
        }
        if let Some(Err(err)) = blocking(consumer, move |c| c.incremental_unassign(&list)).await {
            debug!(%err, "unassigning partitions nobody reads");
        }
        // A partition wanted again at once gets a new queue on the same librdkafka
        // queue, which the old one must be done with first.
        stop_readers(gone).await;
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
        let task = tokio::spawn(read_partition(
            shared.clone(),
            queue,
            feed.clone(),
            stop.clone(),
        ));
        readers.insert(
            (feed.topic.clone(), feed.partition),
            Reader {
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
    let partitions = feeds
        .iter()
        .map(|feed| (feed.topic.clone(), feed.partition))
        .collect();
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

/// Ends the streams of `feeds` with `error` and forgets the feeds: new streams of
/// their partitions get new feeds instead of a failed one.
fn drop_feeds<'a>(shared: &Shared, feeds: impl Iterator<Item = &'a Arc<Feed>>, error: &Error) {
    let mut state = shared.lock();
    for feed in feeds {
        feed.fail(error.clone());
        if state.holds(feed) {
            state.feeds.remove(&(feed.topic.clone(), feed.partition));
        }
    }
    // The consumer reconciles, and stops if no feed is left.
    shared.wake.notify_one();
}
