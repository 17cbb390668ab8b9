//! The consumer manager: owns every Kafka consumer the gateway runs, from the
//! Subscribe that creates it to its teardown.
//!
//! A group subscription has its own consumer. A subscription without a group is
//! resolved to (topic, partition, start offset) triples first; it then joins the
//! live feeds that one shared consumer fills (see [`fanout`]) when they reach back
//! to its start, and gets a consumer of its own otherwise.

mod context;
mod fanout;
mod offsets;
mod pump;
mod readahead;
mod share;
mod subscription;
mod task;

pub use share::ConsumerShare;
pub use subscription::{Subscription, SubscriptionHandle};

use super::{
    metadata::{Lookups, OffsetLookup, TopicLookup},
    partitions, KafkaSettings,
};
use crate::domain::{
    AckMode, Excerpt, GroupId, GroupStart, Position, SubscriptionSpec, TopicName, TopicPartition,
};
use crate::{kafka, Error};
use context::{Floors, GroupContext};
use fanout::FanOut;
use offsets::CommitTracker;
use pump::{Commits, Pump};
use rdkafka::{
    consumer::{Consumer, ConsumerContext, DefaultConsumerContext, StreamConsumer},
    Offset, TopicPartitionList,
};
use std::{
    collections::HashMap,
    hash::{BuildHasher, Hasher},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, Weak,
    },
    time::{Duration, Instant},
};
use subscription::Source;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, warn};

/// Creates, tracks and tears down the consumers behind Subscribe streams.
pub struct ConsumerManager {
    settings: KafkaSettings,
    topics: Arc<TopicLookup>,
    offsets: OffsetLookup,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Client-acknowledged subscriptions by id.
    acks: Mutex<HashMap<String, Weak<CommitTracker>>>,
    /// Start floors of the LATEST group subscriptions alive here, by group: a
    /// member that joins takes the older floors, so its group skips nothing
    /// published after the first of them started.
    floors: Mutex<HashMap<GroupId, Vec<Weak<Floors>>>>,
    fanout: FanOut,
    /// Set once `shutdown` is cancelled, for streams to read on every poll (the
    /// token's own check takes a lock); a task started with the first subscription
    /// sets it.
    stopping: Arc<AtomicBool>,
    watching: std::sync::Once,
    /// Subscriptions whose consumer is being set up: they hold a slot under
    /// `--max-subscriptions` before their task counts.
    setting_up: AtomicUsize,
}

impl ConsumerManager {
    /// A manager whose subscriptions end when `shutdown` is cancelled.
    pub fn new(
        settings: &KafkaSettings,
        lookups: &Lookups,
        shutdown: CancellationToken,
    ) -> ConsumerManager {
        ConsumerManager {
            fanout: FanOut::new(settings, lookups.offsets.clone(), shutdown.clone()),
            stopping: Arc::new(AtomicBool::new(false)),
            watching: std::sync::Once::new(),
            setting_up: AtomicUsize::new(0),
            settings: settings.clone(),
            topics: lookups.topics.clone(),
            offsets: lookups.offsets.clone(),
            shutdown,
            tasks: TaskTracker::new(),
            acks: Mutex::new(HashMap::new()),
            floors: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a subscription. Topics and partitions are checked, and start offsets
    /// resolved, before this returns: a partition subscription starting at LATEST
    /// sees every record published after it returned.
    /// Returns the stream of its events and a handle for commands while it runs.
    /// A subscription with a consumer of its own takes a place in `share` (its
    /// client connection's) for as long as it runs.
    pub async fn subscribe(
        &self,
        spec: SubscriptionSpec,
        share: &ConsumerShare,
    ) -> Result<(SubscriptionHandle, Subscription), Error> {
        let subscription = self.open(spec, share).await?;
        Ok((subscription.handle(), subscription))
    }

    async fn open(
        &self,
        spec: SubscriptionSpec,
        share: &ConsumerShare,
    ) -> Result<Subscription, Error> {
        if self.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        self.watching.call_once(|| {
            let (shutdown, stopping) = (self.shutdown.clone(), self.stopping.clone());
            tokio::spawn(async move {
                shutdown.cancelled().await;
                stopping.store(true, Ordering::Release);
            });
        });
        for topic in spec.topics() {
            self.topics.partition_count(topic).await?;
        }
        match spec {
            SubscriptionSpec::Group {
                group_id,
                topics,
                start,
                acks,
            } => {
                let place = share.take(self.settings.consumer.max_subscriptions_per_connection)?;
                let slot = self.reserve_slot()?;
                let subscription = self
                    .subscribe_group(group_id, topics, start, acks, slot)
                    .await?;
                Ok(subscription.holding(place))
            }
            SubscriptionSpec::Partitions {
                topics,
                partitions,
                start,
            } => {
                let assignment =
                    partitions::resolve(&self.topics, &self.offsets, &topics, partitions, start)
                        .await?;
                if let Some(reader) = self.join_feeds(&assignment)? {
                    return Ok(Subscription::new(
                        Source::Shared(reader),
                        None,
                        None,
                        self.shutdown.clone().cancelled_owned(),
                        self.stopping.clone(),
                    ));
                }
                let place = share.take(self.settings.consumer.max_subscriptions_per_connection)?;
                let slot = self.reserve_slot()?;
                let subscription = self.subscribe_partitions(topics, assignment, slot).await?;
                Ok(subscription.holding(place))
            }
        }
    }

    /// Joins the shared live feeds when every start is an exact offset (EARLIEST
    /// keeps its own consumer, which follows retention from the oldest record).
    fn join_feeds(
        &self,
        assignment: &[(TopicPartition, Offset)],
    ) -> Result<Option<fanout::FeedReader>, Error> {
        let exact: Option<Vec<Position>> = assignment
            .iter()
            .map(|(partition, offset)| match offset {
                Offset::Offset(offset) => Some(partition.clone().at(*offset)),
                _ => None,
            })
            .collect();
        match exact {
            Some(exact) if self.settings.fanout.enabled => self.fanout.join(&exact),
            _ => Ok(None),
        }
    }

    /// A slot for one consumer more, or a refusal when every slot is taken by a
    /// running consumer or one being set up.
    fn reserve_slot(&self) -> Result<Slot<'_>, Error> {
        let setting_up = self.setting_up.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(&self.setting_up);
        if self.tasks.len() + setting_up >= self.settings.consumer.max_subscriptions {
            return Err(Error::Overloaded {
                message: format!(
                    "this gateway already runs {} subscriptions with a consumer of their own (--max-subscriptions); retry later or on another instance",
                    self.settings.consumer.max_subscriptions
                ),
                limit: self.settings.consumer.max_subscriptions,
            });
        }
        Ok(slot)
    }

    /// Applies a client's acknowledgements to the subscription `id`, in order, up
    /// to the first one that fails.
    pub fn ack(&self, id: &str, records: &[Position]) -> Result<(), Error> {
        let delivered = self
            .acks
            .lock()
            .expect("ack registry lock")
            .get(id)
            .and_then(Weak::upgrade)
            .ok_or_else(|| Error::UnknownSubscription(Excerpt(id).to_string()))?;
        subscription::apply_acks(&delivered, records)
    }

    /// Gives a client-acknowledged subscription an id for its acks. Entries of
    /// ended subscriptions (their tracking dropped with the consumer) go here too.
    fn register_acks(&self, delivered: &Arc<CommitTracker>) -> String {
        let id = subscription_id();
        let mut acks = self.acks.lock().expect("ack registry lock");
        acks.retain(|_, d| d.strong_count() > 0);
        acks.insert(id.clone(), Arc::downgrade(delivered));
        id
    }

    /// Consumers alive now, including those still closing and the shared one: each
    /// lives exactly as long as its task.
    pub fn live_consumers(&self) -> usize {
        self.tasks.len() + self.fanout.consumers()
    }

    /// Subscribe streams reading the shared live feeds now.
    pub fn shared_streams(&self) -> usize {
        self.fanout.streams()
    }

    /// Waits until every subscription ended and its consumer is destroyed. Call
    /// after cancelling the shutdown token.
    pub async fn closed(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.fanout.closed().await;
    }

    async fn subscribe_group(
        &self,
        group_id: GroupId,
        topics: Vec<TopicName>,
        start: GroupStart,
        acks: AckMode,
        slot: Slot<'_>,
    ) -> Result<Subscription, Error> {
        let (reset, floors) = match start {
            GroupStart::Latest => ("latest", self.floors(&group_id, &topics).await?),
            GroupStart::Earliest => ("earliest", None),
        };
        let delivered = Arc::new(CommitTracker::new(acks));
        let context = GroupContext {
            group: group_id.clone(),
            delivered: delivered.clone(),
            floors,
            timeout: self.settings.kafka.broker_timeout,
        };
        let config = self.settings.consumer(Some(group_id.as_str()), reset);
        let names: Vec<String> = topics.iter().map(|t| t.as_str().to_owned()).collect();
        let consumer = self
            .prepare(move || {
                let consumer: StreamConsumer<GroupContext> = config
                    .create_with_context(context)
                    .map_err(|e| kafka::Error::client("consumer", e))?;
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                consumer
                    .subscribe(&names)
                    .map_err(|e| kafka::Error::from_kafka(&e, None))?;
                Ok(consumer)
            })
            .await?;
        let commits = Commits {
            delivered: delivered.clone(),
            interval: self.settings.consumer.commit_interval,
        };
        let started = delivered
            .client_acks()
            .then(|| self.register_acks(&delivered));
        let subscription = self.start(consumer, topics, Some(commits), Some(delivered), started);
        drop(slot);
        Ok(subscription)
    }

    /// The end of every partition of `topics` now, where a LATEST group member
    /// starts the partitions it gets without a committed offset: every record
    /// published after its Subscribe returned is then read by the group. Where an
    /// earlier member of `group` still runs on this instance, its older floors
    /// count. Past [`crate::domain::MAX_PARTITIONS`] there are none (and
    /// librdkafka's "latest" applies).
    async fn floors(
        &self,
        group: &GroupId,
        topics: &[TopicName],
    ) -> Result<Option<Arc<Floors>>, Error> {
        let partitions = match partitions::every_partition(&self.topics, topics).await {
            Ok(partitions) => partitions,
            Err(Error::TooManyPartitions { limit }) => {
                warn!(
                    limit,
                    "a LATEST group subscription of this many partitions starts new partitions where librdkafka finds their end"
                );
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        let ends = self.offsets.ends(partitions.clone()).await?;
        let mut floors: Floors = partitions.into_iter().zip(ends).collect();
        let mut live = self.floors.lock().expect("floors lock");
        live.retain(|_, members| {
            members.retain(|f| f.strong_count() > 0);
            !members.is_empty()
        });
        let members = live.entry(group.clone()).or_default();
        // Only this member's own partitions: floors never grow beyond its topics.
        for earlier in members.iter().filter_map(Weak::upgrade) {
            for (key, floor) in floors.iter_mut() {
                if let Some(&older) = earlier.get(key) {
                    *floor = (*floor).min(older);
                }
            }
        }
        let floors = Arc::new(floors);
        members.push(Arc::downgrade(&floors));
        Ok(Some(floors))
    }

    async fn subscribe_partitions(
        &self,
        topics: Vec<TopicName>,
        assignment: Vec<(TopicPartition, Offset)>,
        slot: Slot<'_>,
    ) -> Result<Subscription, Error> {
        let from_beginning = assignment
            .iter()
            .all(|(_, o)| matches!(o, Offset::Beginning));
        let mut list = TopicPartitionList::with_capacity(assignment.len());
        for (TopicPartition { topic, partition }, offset) in &assignment {
            list.add_partition_offset(topic.as_str(), *partition, *offset)
                .map_err(|e| kafka::Error::Other(e.to_string()))?;
        }
        // With explicit offsets the range was checked; if retention deletes records
        // under a running stream, fail it rather than silently jump.
        let reset = if from_beginning { "earliest" } else { "error" };
        let config = self.settings.consumer(None, reset);
        let leaders_of = from_beginning.then_some(topics.clone());
        let consumer = self
            .prepare(move || {
                let consumer: StreamConsumer<DefaultConsumerContext> = config
                    .create()
                    .map_err(|e| kafka::Error::client("consumer", e))?;
                if let Some(topics) = leaders_of {
                    learn_leaders(&consumer, &topics);
                }
                consumer
                    .assign(&list)
                    .map_err(|e| kafka::Error::from_kafka(&e, None))?;
                Ok(consumer)
            })
            .await?;
        let subscription = self.start(consumer, topics, None, None, None);
        drop(slot);
        Ok(subscription)
    }

    /// Creates and sets up a consumer with `build` on the blocking pool: librdkafka's
    /// subscribe, assign and metadata requests wait for its own threads, and must
    /// not hold a runtime thread other streams need. A consumer that comes too late
    /// (the gateway began to stop meanwhile, or the Subscribe call was dropped) is
    /// destroyed on the blocking pool too, since a destroy waits as well.
    async fn prepare<C: ConsumerContext + 'static>(
        &self,
        build: impl FnOnce() -> Result<StreamConsumer<C>, Error> + Send + 'static,
    ) -> Result<StreamConsumer<C>, Error> {
        let tasks = self.tasks.clone();
        let mut built = tokio::task::spawn_blocking(move || {
            build().map(|consumer| Unstarted {
                consumer: Some(consumer),
                tasks,
            })
        })
        .await
        // Fails only when the runtime is stopping.
        .map_err(|_| Error::ShuttingDown)??;
        if self.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        Ok(built.consumer.take().expect("a consumer just built"))
    }

    fn start<C: ConsumerContext + 'static>(
        &self,
        consumer: StreamConsumer<C>,
        topics: Vec<TopicName>,
        commits: Option<Commits>,
        delivered: Option<Arc<CommitTracker>>,
        started: Option<String>,
    ) -> Subscription {
        let (tx, rx) = readahead::channel(self.settings.consumer.subscribe_buffer);
        let pump = Pump {
            consumer,
            topics,
            records: tx,
            shutdown: self.shutdown.clone(),
            commits,
        };
        self.tasks.spawn(pump.run());
        Subscription::new(
            Source::Own(rx),
            delivered,
            started,
            self.shutdown.clone().cancelled_owned(),
            self.stopping.clone(),
        )
    }
}

/// One of `--max-subscriptions` consumer slots, held while a subscription's
/// consumer is set up; once its task runs, the task counts instead.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A consumer built for a subscription that has not started yet. Dropped with the
/// consumer still inside, it destroys the consumer on the blocking pool, tracked
/// with the running ones.
struct Unstarted<C: ConsumerContext + 'static> {
    consumer: Option<StreamConsumer<C>>,
    tasks: TaskTracker,
}

impl<C: ConsumerContext + 'static> Drop for Unstarted<C> {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            self.tasks.spawn_blocking(move || drop(consumer));
        }
    }
}

/// A subscription id that is unique in this process and hard to guess: random
/// bits from the standard library's hasher keys, and a counter.
fn subscription_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(n);
    format!("{:016x}{n:x}", hasher.finish())
}

/// Has a new consumer look up its topics' leaders before it is assigned a logical
/// start (the beginning): librdkafka queries such an offset only once it knows the
/// leader, and when it does not at assignment it retries after a fixed 500 ms,
/// which every EARLIEST stream waited for its first record. The lookup gets at
/// most that long in all; one that fails or runs out of time leaves librdkafka to
/// its own retry. Blocks.
fn learn_leaders(consumer: &StreamConsumer<DefaultConsumerContext>, topics: &[TopicName]) {
    const BUDGET: Duration = Duration::from_millis(500);
    let until = Instant::now() + BUDGET;
    for topic in topics {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Err(err) = consumer.fetch_metadata(Some(topic.as_str()), left) {
            debug!(%err, %topic, "leader lookup before assignment failed");
        }
    }
}
