//! Callbacks librdkafka makes on a group consumer: rebalances and commit results.

use super::offsets::CommitTracker;
use crate::domain::{GroupId, Position, TopicName, TopicPartition};
use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol},
    error::KafkaResult,
    types::RDKafkaRespErr,
    ClientContext, Offset, TopicPartitionList,
};
use std::{collections::HashMap, sync::Arc, time::Duration};
use tracing::{debug, info, warn};

/// Where a LATEST group starts a partition it has no committed offset for: the
/// partition's end when the member's Subscribe call resolved it, before it
/// returned.
pub type Floors = HashMap<TopicPartition, i64>;

/// Context of a group consumer. Its callbacks run on the thread that polls the
/// consumer (a runtime thread, for a stream's pump) and must return quickly: the
/// commits they make are asynchronous. The assign or unassign after a rebalance
/// waits for librdkafka's main thread, usually briefly, and a LATEST group's
/// assignment asks the coordinator for the committed offsets first (one round
/// trip, bounded by the broker timeout); only a rebalance runs either.
pub struct GroupContext {
    /// Group id, for logs.
    pub group: GroupId,
    /// Offsets delivered to the client and not yet committed.
    pub delivered: Arc<CommitTracker>,
    /// For a LATEST group: the start of every partition of its topics that has no
    /// committed offset when this member gets it.
    pub floors: Option<Arc<Floors>>,
    /// Bound on the committed-offset lookup of an assignment.
    pub timeout: Duration,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let pinned = self.pin_starts(consumer, partitions);
                info!(group = %self.group, partitions = %describe(partitions), "partitions assigned");
                self.delivered.assign(partitions, &pinned);
                let assigned = if cooperative {
                    consumer.incremental_assign(partitions)
                } else {
                    consumer.assign(partitions)
                };
                match assigned {
                    // The pinned starts are committed at once, so that an owner
                    // after this one resumes there even if this member delivers
                    // nothing.
                    Ok(()) => self.delivered.commit(consumer),
                    Err(err) => warn!(group = %self.group, %err, "assigning partitions failed"),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                info!(group = %self.group, partitions = %describe(partitions), "partitions revoked");
                // Commit what the client received before another member takes over.
                // Asynchronous, because this runs on the thread polling the consumer
                // (a runtime thread); the request still goes to the coordinator
                // ahead of this member's rejoin, so it lands before the new owner
                // reads the committed offsets. A lost assignment (session expired)
                // has a new owner already: committing would only be refused.
                let offsets = self.delivered.revoke(partitions);
                if let (Some(offsets), false) = (offsets, consumer.assignment_lost()) {
                    if let Err(err) = consumer.commit(&offsets, CommitMode::Async) {
                        warn!(group = %self.group, %err, "commit on revoke failed; the new owner re-reads those records");
                    }
                }
                self.unassign(consumer, partitions, cooperative);
            }
            other => {
                warn!(group = %self.group, err = ?other, "rebalance error");
                self.unassign(consumer, partitions, cooperative);
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                debug!(group = %self.group, offsets = %describe(offsets), "offsets committed")
            }
            Err(err) => {
                warn!(group = %self.group, %err, "offset commit failed; retrying at the next interval");
                self.delivered.restore(offsets);
            }
        }
    }
}

impl GroupContext {
    /// Sets the start of every assigned partition that has no committed offset to
    /// its floor, and returns those starts, to commit.
    ///
    /// Left to librdkafka, such a partition starts wherever "latest" is when it
    /// looks: a record published between the member's Subscribe and its first
    /// assignment would be skipped, and so would one published while a partition
    /// moves to another member before anything of it was delivered and committed,
    /// since the new owner looks again. When the lookup fails, librdkafka decides,
    /// as without this.
    fn pin_starts(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: &mut TopicPartitionList,
    ) -> Vec<Position> {
        let Some(floors) = &self.floors else {
            return Vec::new();
        };
        let committed = match blocking(|| {
            consumer.committed_offsets(partitions.clone(), self.timeout)
        }) {
            Ok(committed) => committed,
            Err(err) => {
                warn!(group = %self.group, %err, "committed offsets lookup failed; partitions without one start at the end they have now");
                return Vec::new();
            }
        };
        let mut pinned = Vec::new();
        for p in committed.elements() {
            if p.offset() != Offset::Invalid || p.error().is_err() {
                continue;
            }
            let key = TopicPartition::new(TopicName::trusted(p.topic()), p.partition());
            // A partition added since the Subscribe has no floor: librdkafka's
            // "latest" it is.
            if let Some(&floor) = floors.get(&key) {
                if partitions
                    .set_partition_offset(p.topic(), p.partition(), Offset::Offset(floor))
                    .is_ok()
                {
                    pinned.push(key.at(floor));
                }
            }
        }
        pinned
    }

    fn unassign(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: &TopicPartitionList,
        cooperative: bool,
    ) {
        let unassigned = if cooperative {
            consumer.incremental_unassign(partitions)
        } else {
            consumer.unassign()
        };
        if let Err(err) = unassigned {
            warn!(group = %self.group, %err, "unassigning partitions failed");
        }
    }
}

/// Runs a blocking call on a runtime thread: the runtime moves its other tasks to
/// another thread meanwhile. A single-threaded runtime (tests) just blocks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// `topic/partition@offset` list for logs.
fn describe(partitions: &TopicPartitionList) -> String {
    partitions
        .elements()
        .iter()
        .map(|p| match p.offset().to_raw() {
            Some(offset) if offset >= 0 => format!("{}/{}@{offset}", p.topic(), p.partition()),
            _ => format!("{}/{}", p.topic(), p.partition()),
        })
        .collect::<Vec<_>>()
        .join(",")
}
