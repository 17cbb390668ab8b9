//! The gateway's error: what the domain refused, what Kafka said, the gateway's
//! own states (its limits, its shutdown, its subscriptions and their acks), and the
//! client's deadline. `transport::status` turns it into a gRPC status with
//! machine-readable details, in one place.
//!
//! Kafka's errors stay in [`kafka::Error`]; this type wraps them, so the kafka
//! layer's modules that can also hit a gateway state return this one.

use crate::{
    domain::{Placement, ValidationError},
    kafka,
};
use std::time::Duration;

/// Why a request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request itself is invalid.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Kafka failed or refused the operation.
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    /// The client's deadline passed first.
    #[error("the client's deadline ({0:?}) passed before {1}")]
    DeadlineExceeded(Duration, &'static str),
    /// The gateway is shutting down and takes no more work.
    #[error("the gateway is shutting down: reconnect to another instance or retry shortly")]
    ShuttingDown,
    /// This instance is at a configured limit; retry later or elsewhere.
    #[error("{message}")]
    Overloaded {
        /// What is at its limit, and what to do.
        message: String,
        /// The limit.
        limit: usize,
    },
    /// A shared stream fell behind its live feed by more than the feed keeps.
    #[error("the stream fell behind the live feed of {topic}/{partition} by more than the gateway keeps for slow readers (--fanout-buffer-bytes); read faster, or subscribe again with START_POSITION_OFFSET from the offset after the last record received (records from {resume_offset} are still in the feed)")]
    FellBehind {
        /// The topic of the feed.
        topic: String,
        /// Its partition.
        partition: i32,
        /// The oldest offset the feed still holds.
        resume_offset: i64,
    },
    /// No live client-acknowledged subscription has this id.
    #[error("no subscription {0:?} on this gateway instance: it ended, or its stream is served by another instance (acknowledge on the instance that serves the stream)")]
    UnknownSubscription(String),
    /// An ack on a stream whose records are committed without acks.
    #[error("this Consume stream uses ACK_MODE_AUTO: records are committed without acks")]
    AcksNotEnabled,
    /// An ack for a partition the subscription no longer owns.
    #[error("{topic}/{partition} was revoked from this subscription; its unacknowledged records go to the partition's new owner")]
    PartitionRevoked {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// An ack for a record the subscription did not deliver, or had acked already.
    #[error("offset {offset} of {topic}/{partition} was not delivered by this subscription{}", if *never_read { ": it never read that partition" } else { ", or was acknowledged already" })]
    RecordNotDelivered {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset acknowledged.
        offset: i64,
        /// Whether the subscription never read the partition at all.
        never_read: bool,
    },
    /// A subscription to every partition of its topics would read too many.
    #[error("the topics have more than {limit} partitions in all, more than one call reads or resets: name fewer topics, or (in Subscribe) the partitions to read")]
    TooManyPartitions {
        /// The most one subscription reads.
        limit: usize,
    },
    /// Offsets of a group with active members cannot be reset.
    #[error("group {group:?} is active ({members}): stop its consumers, then reset its offsets")]
    GroupNotEmpty {
        /// The group.
        group: String,
        /// Who is active, in words.
        members: String,
    },
    /// A batch Publish failed; some of its records may have been written.
    #[error("{0}")]
    Batch(Box<BatchFailure>),
    /// A streamed request that is not the message the RPC takes.
    #[error("the request could not be decoded: {0}")]
    Undecodable(String),
    /// A streamed request over the size limit.
    #[error("{0}")]
    RequestTooLarge(String),
}

/// What became of the records of a batch that failed.
#[derive(Debug, Clone)]
pub struct BatchFailure {
    /// Records in the request.
    pub count: usize,
    /// Records that failed, by index in the request, in request order; never empty.
    pub failed: Vec<(usize, Error)>,
    /// Records the broker acknowledged anyway, by index, in request order.
    pub written: Vec<(usize, Placement)>,
}

impl BatchFailure {
    /// The first failure, whose error decides the status of the whole batch.
    pub fn first(&self) -> &Error {
        &self.failed[0].1
    }
}

impl std::fmt::Display for BatchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (index, first) = &self.failed[0];
        write!(
            f,
            "record {index} of {} (counting from 0) failed: {first}",
            self.count
        )?;
        let others = self.failed.len() - 1;
        if others > 0 {
            write!(f, "; {others} more failed")?;
        }
        if !self.written.is_empty() {
            write!(
                f,
                "; {} were written anyway (the error details list them)",
                self.written.len()
            )?;
        }
        Ok(())
    }
}
