//! Administration of Kafka on a client's behalf: today setting a consumer group's
//! offsets (ResetOffsets); the AdminService's topic and group calls join here.

use super::{
    metadata::{Lookups, OffsetLookup, TopicLookup},
    partitions, KafkaSettings,
};
use crate::domain::{GroupId, PartitionStart, Position, TopicName};
use crate::{kafka, Error};
use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer},
    Offset, TopicPartitionList,
};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Offset resets that may run at once; more are refused (RESOURCE_EXHAUSTED).
const MAX_RESETS: usize = 4;

/// Runs administrative requests against the cluster.
pub struct Admin {
    settings: KafkaSettings,
    topics: Arc<TopicLookup>,
    offsets: OffsetLookup,
    /// Offset resets running now: each builds a Kafka client of its own on the
    /// blocking pool, so only a few run at once.
    resets: Arc<Semaphore>,
}

impl Admin {
    /// Requests answered through `lookups` and clients made from `settings`.
    pub fn new(settings: &KafkaSettings, lookups: &Lookups) -> Admin {
        Admin {
            settings: settings.clone(),
            topics: lookups.topics.clone(),
            offsets: lookups.offsets.clone(),
            resets: Arc::new(Semaphore::new(MAX_RESETS)),
        }
    }

    /// Sets `group`'s committed offsets for the partitions `start` resolves to in
    /// `topic`, and returns them. Kafka takes these commits only from an empty group,
    /// so a group with active members is refused.
    pub async fn reset_offsets(
        &self,
        group: &GroupId,
        topic: TopicName,
        start: PartitionStart,
    ) -> Result<Vec<Position>, Error> {
        // Held by the blocking task, which runs on when a caller gives up waiting.
        let running = self
            .resets
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Overloaded {
                message: format!(
                    "{MAX_RESETS} offset resets are already running on this gateway instance; retry shortly"
                ),
                limit: MAX_RESETS,
            })?;
        self.topics.partition_count(&topic).await?;
        let resolved = partitions::resolve(
            &self.topics,
            &self.offsets,
            std::slice::from_ref(&topic),
            None,
            start,
        )
        .await?;
        // EARLIEST resolves to the logical beginning; a commit needs the number.
        let lows = self
            .offsets
            .watermarks(
                resolved
                    .iter()
                    .map(|(partition, _)| partition.clone())
                    .collect(),
            )
            .await?;
        let offsets: Vec<_> = resolved
            .into_iter()
            .zip(lows)
            .map(|((partition, offset), (low, _))| match offset {
                Offset::Offset(offset) => partition.at(offset),
                _ => partition.at(low),
            })
            .collect();
        let config = self.settings.consumer(Some(group.as_str()), "earliest");
        let (group, timeout, list) = (
            group.to_string(),
            self.settings.kafka.broker_timeout,
            offsets.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let _running = running;
            let consumer: BaseConsumer = config
                .create()
                .map_err(|e| kafka::Error::client("consumer", e))?;
            let groups = consumer
                .fetch_group_list(Some(&group), timeout)
                .map_err(|e| kafka::Error::from_kafka(&e, None))?;
            let members = groups
                .groups()
                .iter()
                .find(|g| g.name() == group)
                .map_or(0, |g| g.members().len());
            let active = |members: String| Error::GroupNotEmpty {
                group: group.clone(),
                members,
            };
            if members > 0 {
                return Err(active(format!("{members} members")));
            }
            let mut tpl = TopicPartitionList::with_capacity(list.len());
            for Position {
                topic,
                partition,
                offset,
            } in &list
            {
                tpl.add_partition_offset(topic.as_str(), *partition, Offset::Offset(*offset))
                    .map_err(|e| kafka::Error::Other(e.to_string()))?;
            }
            consumer.commit(&tpl, CommitMode::Sync).map_err(|e| {
                match kafka::Error::from_kafka(&e, None) {
                    kafka::Error::MembershipLost(why) => active(why),
                    other => other.into(),
                }
            })
        })
        .await
        .map_err(|e| kafka::Error::Other(format!("offset reset task failed: {e}")))??;
        Ok(offsets)
    }
}
