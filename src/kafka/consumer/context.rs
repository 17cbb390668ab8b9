//! Callbacks librdkafka makes on a group consumer: rebalances and commit results.

use super::offsets::DeliveredOffsets;
use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance},
    error::KafkaResult,
    ClientContext, TopicPartitionList,
};
use std::sync::Arc;
use tracing::{debug, info, warn};

/// Context of a group consumer. Its callbacks run on the thread that polls the
/// consumer (a runtime thread, for a stream's pump) and must return quickly: the
/// commit on revoke is asynchronous. The assign or unassign that rdkafka makes
/// after a rebalance callback does wait for librdkafka's main thread, usually
/// briefly; only a rebalance runs it.
pub struct GroupContext {
    /// Group id, for logs.
    pub group: String,
    /// Offsets delivered to the client and not yet committed.
    pub delivered: Arc<DeliveredOffsets>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                info!(group = %self.group, partitions = %describe(partitions), "partitions assigned");
                self.delivered.assign(partitions);
            }
            Rebalance::Revoke(partitions) => {
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
            }
            Rebalance::Error(err) => warn!(group = %self.group, %err, "rebalance error"),
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
