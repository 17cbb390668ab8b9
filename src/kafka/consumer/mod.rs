//! The consumer manager: owns every Kafka consumer the gateway runs, from the
//! Subscribe that creates it to its teardown.
//!
//! Today each subscription has its own consumer. Partition subscriptions go through
//! [`ConsumerManager::subscribe`] with a resolved list of (topic, partition, start
//! offset), which is what a shared per-partition reader (fan-out to many streams)
//! would take, so that change stays inside this module.

mod context;
mod offsets;
mod partitions;
mod pump;
mod subscription;

pub use subscription::Subscription;

use super::{
    metadata::{OffsetLookup, TopicLookup},
    Error, KafkaSettings,
};
use crate::domain::{GroupStart, SubscriptionSpec, TopicName};
use context::GroupContext;
use offsets::DeliveredOffsets;
use pump::{Commits, Pump};
use rdkafka::{
    consumer::{BaseConsumer, Consumer, ConsumerContext, DefaultConsumerContext, StreamConsumer},
    Offset, TopicPartitionList,
};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Creates, tracks and tears down the consumers behind Subscribe streams.
pub struct ConsumerManager {
    settings: KafkaSettings,
    topics: TopicLookup,
    offsets: OffsetLookup,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl ConsumerManager {
    /// A manager whose subscriptions end when `shutdown` is cancelled.
    pub fn new(
        settings: &KafkaSettings,
        shutdown: CancellationToken,
    ) -> Result<ConsumerManager, Error> {
        let lookups: BaseConsumer = settings
            .metadata()
            .create()
            .map_err(|e| Error::client("metadata client", e))?;
        let lookups = Arc::new(lookups);
        Ok(ConsumerManager {
            settings: settings.clone(),
            topics: TopicLookup::through_consumer(lookups.clone(), settings.broker_timeout),
            offsets: OffsetLookup::new(lookups, settings.broker_timeout),
            shutdown,
            tasks: TaskTracker::new(),
        })
    }

    /// Starts a subscription. Topics and partitions are checked, and start offsets
    /// resolved, before this returns: a partition subscription starting at LATEST
    /// sees every record published after it returned.
    pub async fn subscribe(&self, spec: SubscriptionSpec) -> Result<Subscription, Error> {
        if self.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        if self.live_consumers() >= self.settings.max_subscriptions {
            return Err(Error::Overloaded(format!(
                "this gateway already runs {} subscriptions (--max-subscriptions); retry later or on another instance",
                self.settings.max_subscriptions
            )));
        }
        for topic in spec.topics() {
            self.topics.partition_count(topic).await?;
        }
        match spec {
            SubscriptionSpec::Group {
                group_id,
                topics,
                start,
            } => self.subscribe_group(group_id, topics, start),
            SubscriptionSpec::Partitions {
                topics,
                partitions,
                start,
            } => {
                let assignment =
                    partitions::resolve(&self.topics, &self.offsets, &topics, partitions, start)
                        .await?;
                self.subscribe_partitions(topics, assignment)
            }
        }
    }

    /// Consumers alive now, including those still closing: each lives exactly as
    /// long as its pump task.
    pub fn live_consumers(&self) -> usize {
        self.tasks.len()
    }

    /// Waits until every subscription ended and its consumer is destroyed. Call
    /// after cancelling the shutdown token.
    pub async fn closed(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn subscribe_group(
        &self,
        group_id: String,
        topics: Vec<TopicName>,
        start: GroupStart,
    ) -> Result<Subscription, Error> {
        let reset = match start {
            GroupStart::Latest => "latest",
            GroupStart::Earliest => "earliest",
        };
        let delivered = Arc::new(DeliveredOffsets::default());
        let context = GroupContext {
            group: group_id.clone(),
            delivered: delivered.clone(),
        };
        let consumer: StreamConsumer<GroupContext> = self
            .settings
            .consumer(Some(&group_id), reset)
            .create_with_context(context)
            .map_err(|e| Error::client("consumer", e))?;
        let names: Vec<&str> = topics.iter().map(TopicName::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|e| Error::from_kafka(&e, None))?;
        let commits = Commits {
            delivered: delivered.clone(),
            interval: self.settings.commit_interval,
        };
        Ok(self.start(consumer, topics, Some(commits), Some(delivered)))
    }

    fn subscribe_partitions(
        &self,
        topics: Vec<TopicName>,
        assignment: Vec<(TopicName, i32, Offset)>,
    ) -> Result<Subscription, Error> {
        // With explicit offsets the range was checked; if retention deletes records
        // under a running stream, fail it rather than silently jump.
        let reset = if assignment
            .iter()
            .all(|(_, _, o)| matches!(o, Offset::Beginning))
        {
            "earliest"
        } else {
            "error"
        };
        let consumer: StreamConsumer<DefaultConsumerContext> = self
            .settings
            .consumer(None, reset)
            .create()
            .map_err(|e| Error::client("consumer", e))?;
        let mut list = TopicPartitionList::with_capacity(assignment.len());
        for (topic, partition, offset) in &assignment {
            list.add_partition_offset(topic.as_str(), *partition, *offset)
                .map_err(|e| Error::Other(e.to_string()))?;
        }
        consumer
            .assign(&list)
            .map_err(|e| Error::from_kafka(&e, None))?;
        Ok(self.start(consumer, topics, None, None))
    }

    fn start<C: ConsumerContext + 'static>(
        &self,
        consumer: StreamConsumer<C>,
        topics: Vec<TopicName>,
        commits: Option<Commits>,
        delivered: Option<Arc<DeliveredOffsets>>,
    ) -> Subscription {
        let (tx, rx) = mpsc::channel(self.settings.subscribe_buffer);
        let pump = Pump {
            consumer,
            topics,
            records: tx,
            shutdown: self.shutdown.clone(),
            commits,
        };
        self.tasks.spawn(pump.run());
        Subscription::new(rx, delivered, self.shutdown.clone().cancelled_owned())
    }
}
