//! Offsets of records a group subscription handed to its client, waiting to be
//! committed.

use crate::domain::TopicName;
use rdkafka::{Offset, TopicPartitionList};
use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

/// Per partition, the next offset to commit: one past the last record delivered.
/// Only partitions currently assigned to this member are tracked, so records of a
/// partition revoked while they sat in the stream buffer are never committed by a
/// member that no longer owns it (the new owner reads them again).
#[derive(Default)]
pub struct DeliveredOffsets {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    assigned: HashSet<(String, i32)>,
    pending: HashMap<(String, i32), i64>,
}

impl DeliveredOffsets {
    /// Notes that the record at `offset` reached the client.
    pub fn mark(&self, topic: &TopicName, partition: i32, offset: i64) {
        let mut inner = self.inner.lock().expect("offsets lock");
        let key = (topic.to_string(), partition);
        if inner.assigned.contains(&key) {
            inner.pending.insert(key, offset + 1);
        }
    }

    /// Partitions the group gave this member.
    pub fn assign(&self, partitions: &TopicPartitionList) {
        let mut inner = self.inner.lock().expect("offsets lock");
        for p in partitions.elements() {
            inner
                .assigned
                .insert((p.topic().to_string(), p.partition()));
        }
    }

    /// Forgets `partitions` and returns their uncommitted offsets, to commit before
    /// the group moves them.
    pub fn revoke(&self, partitions: &TopicPartitionList) -> Option<TopicPartitionList> {
        let mut inner = self.inner.lock().expect("offsets lock");
        let mut out = TopicPartitionList::new();
        for p in partitions.elements() {
            let key = (p.topic().to_string(), p.partition());
            inner.assigned.remove(&key);
            if let Some(next) = inner.pending.remove(&key) {
                let _ = out.add_partition_offset(&key.0, key.1, Offset::Offset(next));
            }
        }
        (out.count() > 0).then_some(out)
    }

    /// Takes every uncommitted offset, to commit now.
    pub fn take(&self) -> Option<TopicPartitionList> {
        let mut inner = self.inner.lock().expect("offsets lock");
        let mut out = TopicPartitionList::with_capacity(inner.pending.len());
        for ((topic, partition), next) in inner.pending.drain() {
            let _ = out.add_partition_offset(&topic, partition, Offset::Offset(next));
        }
        (out.count() > 0).then_some(out)
    }

    /// Puts offsets back after a failed commit, unless newer ones arrived since.
    pub fn restore(&self, offsets: &TopicPartitionList) {
        let mut inner = self.inner.lock().expect("offsets lock");
        for p in offsets.elements() {
            let key = (p.topic().to_string(), p.partition());
            if let (Offset::Offset(next), true) = (p.offset(), inner.assigned.contains(&key)) {
                inner.pending.entry(key).or_insert(next);
            }
        }
    }
}
