//! Offsets of records a group subscription handed to its client, waiting to be
//! committed, and the assignment generation that tells current records from stale
//! ones.

use crate::domain::TopicName;
use rdkafka::{Offset, TopicPartitionList};
use std::{collections::HashMap, sync::Mutex};

type Partition = (TopicName, i32);

/// Per assigned partition: the generation of its current assignment and the next
/// offset to commit (one past the last record delivered).
///
/// A record read under one assignment and still buffered when the partition is
/// revoked is stale: another member owns the partition now and reads it again, and
/// if this member gets it back, it re-reads from the committed offset. Stale records
/// are neither delivered nor committed, so a stream never sees an offset twice from
/// one assignment, and a commit never comes from a member that no longer owns the
/// partition.
#[derive(Default)]
pub struct DeliveredOffsets {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_generation: u64,
    assigned: HashMap<Partition, u64>,
    pending: HashMap<Partition, i64>,
    /// Highest offset handed to a commit per partition, so a failed older commit
    /// never puts back an offset below a newer one.
    taken: HashMap<Partition, i64>,
}

impl DeliveredOffsets {
    /// Generation of the partition's current assignment, to tag a record read now.
    pub fn generation(&self, topic: &TopicName, partition: i32) -> u64 {
        let inner = self.lock();
        inner
            .assigned
            .get(&(topic.clone(), partition))
            .copied()
            .unwrap_or(u64::MAX)
    }

    /// Notes that the record at `offset`, read under `generation`, reaches the
    /// client. Returns false for a stale record, which must not be delivered.
    pub fn mark(&self, topic: &TopicName, partition: i32, offset: i64, generation: u64) -> bool {
        let mut inner = self.lock();
        let key = (topic.clone(), partition);
        if inner.assigned.get(&key) != Some(&generation) {
            return false;
        }
        let next = inner.pending.entry(key).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
        true
    }

    /// Partitions the group gave this member.
    pub fn assign(&self, partitions: &TopicPartitionList) {
        let mut inner = self.lock();
        for p in partitions.elements() {
            inner.next_generation += 1;
            let generation = inner.next_generation;
            inner
                .assigned
                .insert((TopicName::trusted(p.topic()), p.partition()), generation);
        }
    }

    /// Forgets `partitions` and returns their uncommitted offsets, to commit before
    /// the group moves them.
    pub fn revoke(&self, partitions: &TopicPartitionList) -> Option<TopicPartitionList> {
        let mut inner = self.lock();
        let mut out = TopicPartitionList::new();
        for p in partitions.elements() {
            let key = (TopicName::trusted(p.topic()), p.partition());
            inner.assigned.remove(&key);
            inner.taken.remove(&key);
            if let Some(next) = inner.pending.remove(&key) {
                let _ = out.add_partition_offset(key.0.as_str(), key.1, Offset::Offset(next));
            }
        }
        (out.count() > 0).then_some(out)
    }

    /// Takes every uncommitted offset, to commit now.
    pub fn take(&self) -> Option<TopicPartitionList> {
        let mut inner = self.lock();
        let pending: Vec<_> = inner.pending.drain().collect();
        let mut out = TopicPartitionList::with_capacity(pending.len());
        for (key, next) in pending {
            let _ = out.add_partition_offset(key.0.as_str(), key.1, Offset::Offset(next));
            inner.taken.insert(key, next);
        }
        (out.count() > 0).then_some(out)
    }

    /// Puts offsets back after a failed commit, for partitions still assigned and
    /// where no newer offset was delivered or handed to a commit since.
    pub fn restore(&self, offsets: &TopicPartitionList) {
        let mut inner = self.lock();
        for p in offsets.elements() {
            let Offset::Offset(next) = p.offset() else {
                continue;
            };
            let key = (TopicName::trusted(p.topic()), p.partition());
            let newest = inner.taken.get(&key) == Some(&next);
            if newest && inner.assigned.contains_key(&key) && !inner.pending.contains_key(&key) {
                inner.pending.insert(key, next);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("offsets lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[(&str, i32, Option<i64>)]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (t, p, o) in entries {
            match o {
                Some(o) => tpl.add_partition_offset(t, *p, Offset::Offset(*o)).unwrap(),
                None => {
                    tpl.add_partition(t, *p);
                }
            }
        }
        tpl
    }

    fn offsets_of(tpl: Option<TopicPartitionList>) -> Vec<(String, i32, i64)> {
        let mut v: Vec<_> = tpl
            .map(|t| {
                t.elements()
                    .iter()
                    .map(|e| {
                        (
                            e.topic().to_string(),
                            e.partition(),
                            e.offset().to_raw().unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn commits_one_past_the_highest_delivered_offset() {
        let d = DeliveredOffsets::default();
        let t = TopicName::trusted("t");
        d.assign(&list(&[("t", 0, None)]));
        let g = d.generation(&t, 0);
        assert!(d.mark(&t, 0, 5, g));
        assert!(d.mark(&t, 0, 3, g));
        assert_eq!(offsets_of(d.take()), vec![("t".into(), 0, 6)]);
        assert!(d.take().is_none());
    }

    #[test]
    fn records_of_an_old_assignment_are_stale() {
        let d = DeliveredOffsets::default();
        let t = TopicName::trusted("t");
        d.assign(&list(&[("t", 0, None)]));
        let old = d.generation(&t, 0);
        assert!(d.mark(&t, 0, 1, old));
        assert_eq!(
            offsets_of(d.revoke(&list(&[("t", 0, None)]))),
            vec![("t".into(), 0, 2)]
        );
        assert!(!d.mark(&t, 0, 2, old), "revoked partition delivered");
        d.assign(&list(&[("t", 0, None)]));
        assert!(
            !d.mark(&t, 0, 2, old),
            "record of the previous assignment delivered"
        );
        assert!(d.mark(&t, 0, 2, d.generation(&t, 0)));
    }

    #[test]
    fn a_failed_old_commit_never_moves_the_offset_back() {
        let d = DeliveredOffsets::default();
        let t = TopicName::trusted("t");
        d.assign(&list(&[("t", 0, None)]));
        let g = d.generation(&t, 0);
        d.mark(&t, 0, 9, g);
        let first = d.take().unwrap();
        d.mark(&t, 0, 19, g);
        let _second = d.take().unwrap();
        d.restore(&first);
        assert!(
            d.take().is_none(),
            "an older offset came back after a newer commit"
        );
        d.restore(&list(&[("t", 0, Some(20))]));
        assert_eq!(offsets_of(d.take()), vec![("t".into(), 0, 20)]);
    }
}
