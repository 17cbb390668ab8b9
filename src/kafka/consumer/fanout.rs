//! Fan-out: subscriptions without a group that read the same partitions share one
//! Kafka consumer per gateway, so a live feed with thousands of watchers costs one
//! fetch from Kafka and a cursor per stream.
//!
//! A stream joins the partitions' [`Feed`]s when every one of them still holds its
//! start offset (a new feed starts where the first stream asked); otherwise it gets
//! a consumer of its own, as do EARLIEST and group subscriptions. One consumer
//! serves every feed: a task reconciles its assignment with the feeds wanted
//! (incremental assign and unassign) and appends what it reads. It stops when the
//! last feed goes and starts again with the next.

use super::{
    feed::{poll_cursors, Cursor, Feed},
    pump::{stream_error, teardown, to_record, BURST},
};
use crate::{
    domain::{ConsumedRecord, TopicName},
    kafka::{metadata::OffsetLookup, Error, KafkaSettings},
};
use futures::{FutureExt, StreamExt};
use rdkafka::{
    consumer::{Consumer, DefaultConsumerContext, StreamConsumer},
    Message, Offset, TopicPartitionList,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};
use tokio::sync::Notify;
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
    /// Wakes the consumer task: the feeds wanted changed, or a paused feed has room.
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

/// What the shared consumer is assigned, by topic then partition, for routing.
type Assigned = HashMap<String, HashMap<i32, Arc<Feed>>>;

/// The feed a record of `topic`/`partition` goes to.
fn routed<'a>(assigned: &'a Assigned, topic: &str, partition: i32) -> Option<&'a Arc<Feed>> {
    assigned
        .get(topic)
        .and_then(|partitions| partitions.get(&partition))
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
    /// `None` when a feed no longer reaches back to a start offset.
    pub fn join(&self, assignment: &[(TopicName, i32, i64)]) -> Result<Option<FeedReader>, Error> {
        let shared = &self.shared;
        let mut state = shared.lock();
        if state.streams >= shared.settings.max_shared_streams {
            return Err(Error::Overloaded(format!(
                "this gateway already serves {} shared Subscribe streams (--max-shared-streams); retry later or on another instance",
                shared.settings.max_shared_streams
            )));
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
                    shared.wake.clone(),
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

/// The shared consumer's task: keeps its assignment equal to the feeds wanted and
/// appends what it reads to them, pausing partitions whose feeds are full, until
/// no feed is left or the gateway stops.
async fn run(shared: Arc<Shared>) {
    let consumer: StreamConsumer<DefaultConsumerContext> = match shared
        .settings
        // Feeds start at explicit offsets; if retention deletes records under a
        // feed, its streams fail rather than silently jump.
        .consumer(None, "error")
        .create()
    {
        Ok(consumer) => consumer,
        Err(err) => {
            let err = Error::client("consumer", err);
            let mut state = shared.lock();
            for (_, joined) in state.feeds.drain() {
                joined.feed.fail(err.clone());
            }
            state.running = false;
            return;
        }
    };
    let mut assigned = Assigned::new();
    // Feeds whose partitions are paused because they are full.
    let mut paused: Vec<Arc<Feed>> = Vec::new();
    // Set when the feeds wanted may have changed.
    let mut changed = true;
    // Made once, as in the pump: a fresh wait per record takes a lock each time.
    let stopping = shared.shutdown.cancelled();
    let mut messages = consumer.stream();
    tokio::pin!(stopping);
    loop {
        if changed {
            resume_with_room(&consumer, &mut paused);
            if !reconcile(&shared, &consumer, &mut assigned) {
                break;
            }
            paused.retain(|feed| {
                routed(&assigned, feed.topic.as_str(), feed.partition)
                    .is_some_and(|current| Arc::ptr_eq(current, feed))
            });
            changed = false;
        }
        tokio::select! {
            biased;
            _ = &mut stopping => {
                shared.lock().running = false;
                break;
            }
            _ = shared.wake.notified() => changed = true,
            next = messages.next() => {
                // Records librdkafka already holds are appended in the same turn.
                let mut next = next;
                let mut taken = 0;
                let mut failure = None;
                while let Some(item) = next.take() {
                    match item {
                        Ok(message) => {
                            if let Some(feed) = routed(&assigned, message.topic(), message.partition()) {
                                if feed.push(to_record(&message, feed.topic.clone())) {
                                    pause(&consumer, feed);
                                    paused.push(feed.clone());
                                }
                            }
                        }
                        Err(err) => {
                            failure = Some(err);
                            break;
                        }
                    }
                    taken += 1;
                    if taken < BURST {
                        next = messages.next().now_or_never().flatten();
                    }
                }
                let Some(err) = failure else { continue };
                let topics: Vec<TopicName> = assigned.keys().map(|t| TopicName::trusted(t)).collect();
                match stream_error(&err, &topics) {
                    Error::Unavailable(msg) => warn!(%msg, "shared consumer error, retrying"),
                    // librdkafka does not say which partition lost its
                    // position: the feeds behind their partition's start did.
                    Error::PositionLost(msg) => {
                        let all: Vec<Arc<Feed>> = assigned.values().flat_map(HashMap::values).cloned().collect();
                        let lost = behind_start(&shared.offsets, &all).await;
                        let lost = if lost.is_empty() { all } else { lost };
                        drop_feeds(&shared, lost.iter(), &Error::PositionLost(msg));
                        changed = true;
                    }
                    // Nor which one another fatal error is about: end the streams
                    // of every feed, which new subscriptions restart.
                    fatal => {
                        fail_all(&shared, &assigned, fatal);
                        changed = true;
                    }
                }
            }
        }
    }
    drop(messages);
    // `running` was cleared where the loop ended, under the lock a new stream takes:
    // clearing it here could hide a consumer task started meanwhile.
    teardown(consumer, None).await;
}

/// Brings the consumer's assignment in line with the feeds wanted. Returns `false`
/// when no feed is left, after marking the consumer stopped (under the same lock a
/// new stream takes, so it then starts another).
fn reconcile(
    shared: &Shared,
    consumer: &StreamConsumer<DefaultConsumerContext>,
    assigned: &mut Assigned,
) -> bool {
    let mut state = shared.lock();
    let mut gone = TopicPartitionList::new();
    for (topic, partitions) in assigned.iter_mut() {
        partitions.retain(|partition, feed| {
            let wanted = state.holds(feed);
            if !wanted {
                gone.add_partition(topic, *partition);
            }
            wanted
        });
    }
    assigned.retain(|_, partitions| !partitions.is_empty());
    if state.feeds.is_empty() {
        state.running = false;
        return false;
    }
    let mut new = TopicPartitionList::new();
    let mut added = Vec::new();
    for joined in state.feeds.values() {
        let feed = &joined.feed;
        let slot = assigned.entry(feed.topic.to_string()).or_default();
        if let std::collections::hash_map::Entry::Vacant(slot) = slot.entry(feed.partition) {
            slot.insert(feed.clone());
            if let Err(err) = new.add_partition_offset(
                feed.topic.as_str(),
                feed.partition,
                Offset::Offset(feed.next_offset()),
            ) {
                feed.fail(Error::Other(err.to_string()));
            }
            added.push(feed.clone());
        }
    }
    drop(state);
    if gone.count() > 0 {
        // A partition assigned again later must not start paused.
        if let Err(err) = consumer.resume(&gone) {
            debug!(%err, "resuming partitions nobody reads");
        }
        if let Err(err) = consumer.incremental_unassign(&gone) {
            debug!(%err, "unassigning partitions nobody reads");
        }
    }
    if new.count() > 0 {
        if let Err(err) = consumer.incremental_assign(&new) {
            drop_feeds(shared, added.iter(), &Error::from_kafka(&err, None));
        }
    }
    true
}

fn pause(consumer: &StreamConsumer<DefaultConsumerContext>, feed: &Feed) {
    let mut one = TopicPartitionList::with_capacity(1);
    one.add_partition(feed.topic.as_str(), feed.partition);
    if let Err(err) = consumer.pause(&one) {
        warn!(%err, topic = %feed.topic, partition = feed.partition, "cannot pause a full feed");
    }
}

/// Resumes the partitions whose feeds have room again (or are gone).
fn resume_with_room(
    consumer: &StreamConsumer<DefaultConsumerContext>,
    paused: &mut Vec<Arc<Feed>>,
) {
    let mut ready = TopicPartitionList::new();
    paused.retain(|feed| {
        let still = feed.paused();
        if !still {
            ready.add_partition(feed.topic.as_str(), feed.partition);
        }
        still
    });
    if ready.count() > 0 {
        if let Err(err) = consumer.resume(&ready) {
            debug!(%err, "resuming feeds with room");
        }
    }
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

/// Ends every feed's streams with `error` and drops the feeds, so that later
/// subscriptions start afresh.
fn fail_all(shared: &Shared, assigned: &Assigned, error: Error) {
    drop_feeds(shared, assigned.values().flat_map(HashMap::values), &error);
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
