//! Fan-out: subscriptions without a group that read the same partitions share one
//! Kafka consumer per gateway, so a live feed with thousands of watchers costs one
//! fetch from Kafka and a cursor per stream.
//!
//! A stream joins the partitions' [`Feed`]s when every one of them still holds its
//! start offset (a new feed starts where the first stream asked); otherwise it gets
//! a consumer of its own, as do EARLIEST and group subscriptions. One consumer
//! serves every feed: a task reconciles its assignment with the feeds wanted
//! (incremental assign and unassign), and each assigned partition has its own
//! librdkafka queue, drained into its feed by a filler task of its own. It stops
//! when the last feed goes and starts again with the next.

mod feed;
mod feed_filler;
mod registry;
mod shared_consumer;

use self::{
    feed::{poll_cursors, Cursor, Feed},
    registry::{Joined, Shared, State},
};
use crate::{
    domain::{ConsumedRecord, Position},
    kafka::{metadata::OffsetLookup, KafkaSettings},
    Error,
};
use std::{
    sync::{Arc, Mutex},
    task::{Context, Poll},
};
use tokio::sync::Notify;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// The registry of live feeds and the consumer behind them.
pub(super) struct FanOut {
    shared: Arc<Shared>,
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

    /// Joins the feeds of `assignment` (each partition's start), or returns
    /// `None` when a feed no longer reaches back to a start offset, or when it would
    /// need more feeds than `--max-shared-partitions`.
    pub fn join(&self, assignment: &[Position]) -> Result<Option<FeedReader>, Error> {
        let shared = &self.shared;
        let mut state = shared.lock();
        if state.streams >= shared.settings.fanout.max_shared_streams {
            return Err(Error::Overloaded {
                message: format!(
                    "this gateway already serves {} shared Subscribe streams (--max-shared-streams); retry later or on another instance",
                    shared.settings.fanout.max_shared_streams
                ),
                limit: shared.settings.fanout.max_shared_streams,
            });
        }
        // Feeds are bounded in number too: past the limit, a stream that needs a new
        // one reads with a consumer of its own.
        let new_feeds = assignment
            .iter()
            .filter(|start| !state.feeds.contains_key(&start.topic_partition()))
            .count();
        if state.feeds.len() + new_feeds > shared.settings.fanout.max_shared_partitions {
            return Ok(None);
        }
        let mut cursors: Vec<(Arc<Feed>, Cursor)> = Vec::with_capacity(assignment.len());
        for start in assignment {
            let feed = match state.feeds.get(&start.topic_partition()) {
                Some(joined) => joined.feed.clone(),
                None => Arc::new(Feed::new(
                    start.topic.clone(),
                    start.partition,
                    start.offset,
                    shared.settings.fanout.fanout_buffer_bytes,
                    Arc::new(Notify::new()),
                )),
            };
            match feed.cursor(start.offset) {
                Some(cursor) => cursors.push((feed, cursor)),
                None => return Ok(None),
            }
        }
        let mut added = false;
        for (feed, cursor) in &cursors {
            feed.claim(cursor);
            let joined = state
                .feeds
                .entry(feed.topic_partition())
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
                shared.tasks.spawn(shared_consumer::run(shared.clone()));
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
            let key = feed.topic_partition();
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
