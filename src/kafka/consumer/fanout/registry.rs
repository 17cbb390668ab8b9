//! The registry of live feeds: which feed serves each partition, how many streams
//! read it, and whether the shared consumer runs. Streams joining and leaving, and
//! the consumer's tasks failing feeds, change it under one lock.

use super::feed::Feed;
use crate::{
    domain::TopicPartition,
    kafka::{metadata::OffsetLookup, KafkaSettings},
    Error,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use tokio::sync::Notify;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// The fan-out's state, shared by its handle, the streams reading feeds and the
/// consumer's tasks.
pub(super) struct Shared {
    pub(super) settings: KafkaSettings,
    /// Finds which feeds lost their position when the consumer reports one lost.
    pub(super) offsets: OffsetLookup,
    pub(super) shutdown: CancellationToken,
    pub(super) tasks: TaskTracker,
    pub(super) state: Mutex<State>,
    /// Wakes the consumer task: the feeds wanted changed.
    pub(super) wake: Arc<Notify>,
}

/// What the lock guards.
#[derive(Default)]
pub(super) struct State {
    pub(super) feeds: HashMap<TopicPartition, Joined>,
    /// Streams reading feeds now.
    pub(super) streams: usize,
    pub(super) next_reader: u64,
    /// A consumer task runs.
    pub(super) running: bool,
}

/// A feed and how many streams read it.
pub(super) struct Joined {
    pub(super) feed: Arc<Feed>,
    pub(super) readers: usize,
}

impl State {
    /// Whether `feed` is still the one wanted for its partition (a failed feed was
    /// removed, and maybe replaced by a new one).
    pub(super) fn holds(&self, feed: &Arc<Feed>) -> bool {
        self.feeds
            .get(&feed.topic_partition())
            .is_some_and(|joined| Arc::ptr_eq(&joined.feed, feed))
    }
}

impl Shared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fan-out lock")
    }
}

/// Ends the streams of `feeds` with `error` and forgets the feeds: new streams of
/// their partitions get new feeds instead of a failed one.
pub(super) fn drop_feeds<'a>(
    shared: &Shared,
    feeds: impl Iterator<Item = &'a Arc<Feed>>,
    error: &Error,
) {
    let mut state = shared.lock();
    for feed in feeds {
        feed.fail(error.clone());
        if state.holds(feed) {
            state.feeds.remove(&feed.topic_partition());
        }
    }
    // The consumer reconciles, and stops if no feed is left.
    shared.wake.notify_one();
}
