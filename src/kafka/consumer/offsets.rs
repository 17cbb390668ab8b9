//! Offsets of records a group subscription handed to its client, waiting to be
//! committed, and the assignment generation that tells current records from stale
//! ones.

use crate::{
    domain::{AckMode, Position, SubscriptionEvent, TopicName, TopicPartition},
    Error,
};
use futures::task::AtomicWaker;
use rdkafka::{
    consumer::{CommitMode, Consumer, ConsumerContext},
    Offset, TopicPartitionList,
};
use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    sync::Mutex,
    task::Context,
};
use tracing::warn;

/// Control events kept for a stream that does not read them; older ones go first.
const MAX_EVENTS: usize = 256;

/// Per assigned partition: the generation of its current assignment and the next
/// offset to commit (one past the last record delivered).
///
/// A record read under one assignment and still buffered when the partition is
/// revoked is stale: another member owns the partition now and reads it again, and
/// if this member gets it back, it re-reads from the committed offset. Stale records
/// are neither delivered nor committed, so a stream never sees an offset twice from
/// one assignment, and a commit never comes from a member that no longer owns the
/// partition.
///
/// With [`AckMode::Client`] a delivered record becomes committable only once the
/// client acknowledged it, and a partition commits up to its first delivered record
/// still unacknowledged.
pub struct CommitTracker {
    mode: AckMode,
    inner: Mutex<Inner>,
    /// Wakes the stream when an ack frees room or a control event arrives.
    waker: AtomicWaker,
}

impl Default for CommitTracker {
    fn default() -> Self {
        CommitTracker::new(AckMode::Auto)
    }
}

#[derive(Default)]
struct Inner {
    /// Client mode: delivered, unacknowledged offsets per partition.
    outstanding: HashMap<TopicPartition, BTreeSet<i64>>,
    /// Client mode: last offset delivered per partition.
    last_delivered: HashMap<TopicPartition, i64>,
    unacked: usize,
    events: VecDeque<SubscriptionEvent>,
    next_generation: u64,
    assigned: HashMap<TopicPartition, u64>,
    /// Every partition this subscription was ever given, to tell an ack for a
    /// revoked partition from one for a partition it never read.
    ever_assigned: HashSet<TopicPartition>,
    pending: HashMap<TopicPartition, i64>,
    /// Starts chosen for partitions without a committed offset, until the first
    /// record of the partition is delivered.
    pinned: HashMap<TopicPartition, i64>,
    /// Highest offset handed to a commit per partition, so a failed older commit
    /// never puts back an offset below a newer one.
    taken: HashMap<TopicPartition, i64>,
}

impl CommitTracker {
    /// Tracking for a subscription in `mode`.
    pub fn new(mode: AckMode) -> CommitTracker {
        CommitTracker {
            mode,
            inner: Mutex::new(Inner::default()),
            waker: AtomicWaker::new(),
        }
    }

    /// Whether the client acknowledges records itself.
    pub fn client_acks(&self) -> bool {
        matches!(self.mode, AckMode::Client { .. })
    }

    /// Registers the stream's waker, then says whether it may deliver another
    /// record (client mode holds at most `max_unacked` unacknowledged).
    pub fn may_deliver(&self, cx: &mut Context<'_>) -> bool {
        self.waker.register(cx.waker());
        match self.mode {
            AckMode::Auto => true,
            AckMode::Client { max_unacked } => self.lock().unacked < max_unacked,
        }
    }

    /// The oldest control event not yet sent (call after [`Self::may_deliver`]
    /// registered the waker).
    pub fn next_event(&self) -> Option<SubscriptionEvent> {
        self.lock().events.pop_front()
    }

    /// Records that the client processed the record at `offset`.
    pub fn ack(&self, position: &Position) -> Result<(), Error> {
        let Position {
            topic,
            partition,
            offset,
        } = position;
        let (partition, offset) = (*partition, *offset);
        let mut inner = self.lock();
        let key = position.topic_partition();
        if !inner.ever_assigned.contains(&key) {
            return Err(Error::RecordNotDelivered {
                topic: topic.to_string(),
                partition,
                offset,
                never_read: true,
            });
        }
        if !inner.assigned.contains_key(&key) {
            return Err(Error::PartitionRevoked {
                topic: topic.to_string(),
                partition,
            });
        }
        let removed = inner
            .outstanding
            .get_mut(&key)
            .is_some_and(|o| o.remove(&offset));
        if !removed {
            return Err(Error::RecordNotDelivered {
                topic: topic.to_string(),
                partition,
                offset,
                never_read: false,
            });
        }
        inner.unacked -= 1;
        let next = match inner.outstanding.get(&key).and_then(|o| o.first()) {
            Some(&first_unacked) => first_unacked,
            None => inner.last_delivered[&key] + 1,
        };
        let committed_up_to = inner.taken.get(&key).copied().unwrap_or(i64::MIN);
        if next > committed_up_to && inner.pending.get(&key).is_none_or(|p| *p < next) {
            inner.pending.insert(key, next);
        }
        drop(inner);
        self.waker.wake();
        Ok(())
    }

    /// Generation of the partition's current assignment, to tag a record read now.
    pub fn generation(&self, topic: &TopicName, partition: i32) -> u64 {
        let inner = self.lock();
        inner
            .assigned
            .get(&TopicPartition::new(topic.clone(), partition))
            .copied()
            .unwrap_or(u64::MAX)
    }

    /// Notes that the record at `offset`, read under `generation`, reaches the
    /// client. Returns false for a stale record, which must not be delivered.
    pub fn mark(&self, topic: &TopicName, partition: i32, offset: i64, generation: u64) -> bool {
        let mut inner = self.lock();
        let key = TopicPartition::new(topic.clone(), partition);
        if inner.assigned.get(&key) != Some(&generation) {
            return false;
        }
        // Almost always empty: no hashing per record for it then.
        let pin = if inner.pinned.is_empty() {
            None
        } else {
            inner.pinned.remove(&key)
        };
        if let Some(pin) = pin {
            if offset < pin {
                // librdkafka started below the pinned start (it was out of range,
                // the log truncated or recreated, and "latest" reset it): the pin
                // must not commit past what is delivered from here.
                warn!(topic = %key.topic, partition, offset, pin, "a partition started below its pinned start");
                if inner.pending.get(&key) == Some(&pin) {
                    inner.pending.remove(&key);
                }
                if inner.taken.get(&key) == Some(&pin) {
                    inner.taken.remove(&key);
                }
            }
        }
        if self.client_acks() {
            if inner
                .last_delivered
                .get(&key)
                .is_some_and(|last| offset <= *last)
            {
                // Read again within one assignment (librdkafka reset the position):
                // nothing may be committed past what is delivered again.
                warn!(topic = %key.topic, partition, offset, "a record was delivered again within one assignment");
                inner.pending.remove(&key);
            }
            if inner
                .outstanding
                .entry(key.clone())
                .or_default()
                .insert(offset)
            {
                inner.unacked += 1;
            }
            let last = inner.last_delivered.entry(key).or_insert(offset);
            *last = (*last).max(offset);
        } else {
            let next = inner.pending.entry(key).or_insert(offset + 1);
            *next = (*next).max(offset + 1);
        }
        true
    }

    /// Partitions the group gave this member; `pinned` are starts chosen for
    /// partitions without a committed offset, to commit as they are even before a
    /// record of them is delivered.
    pub fn assign(&self, partitions: &TopicPartitionList, pinned: &[Position]) {
        let mut inner = self.lock();
        let mut event = Vec::with_capacity(partitions.count());
        for p in partitions.elements() {
            inner.next_generation += 1;
            let generation = inner.next_generation;
            let key = TopicPartition::new(TopicName::trusted(p.topic()), p.partition());
            event.push(key.clone());
            inner.ever_assigned.insert(key.clone());
            inner.assigned.insert(key, generation);
        }
        for start in pinned {
            inner.pending.insert(start.topic_partition(), start.offset);
            inner.pinned.insert(start.topic_partition(), start.offset);
        }
        inner.push_event(SubscriptionEvent::Assigned(event));
        drop(inner);
        self.waker.wake();
    }

    /// Forgets `partitions` and returns their uncommitted offsets, to commit before
    /// the group moves them.
    pub fn revoke(&self, partitions: &TopicPartitionList) -> Option<TopicPartitionList> {
        let mut inner = self.lock();
        let mut out = TopicPartitionList::new();
        let mut event = Vec::with_capacity(partitions.count());
        for p in partitions.elements() {
            let key = TopicPartition::new(TopicName::trusted(p.topic()), p.partition());
            inner.assigned.remove(&key);
            inner.pinned.remove(&key);
            inner.taken.remove(&key);
            inner.last_delivered.remove(&key);
            if let Some(outstanding) = inner.outstanding.remove(&key) {
                inner.unacked -= outstanding.len();
            }
            if let Some(next) = inner.pending.remove(&key) {
                let _ = out.add_partition_offset(
                    key.topic.as_str(),
                    key.partition,
                    Offset::Offset(next),
                );
            }
            event.push(key);
        }
        inner.push_event(SubscriptionEvent::Revoked(event));
        drop(inner);
        self.waker.wake();
        (out.count() > 0).then_some(out)
    }

    /// Takes every uncommitted offset, to commit now.
    pub fn take(&self) -> Option<TopicPartitionList> {
        let mut inner = self.lock();
        let pending: Vec<_> = inner.pending.drain().collect();
        let mut out = TopicPartitionList::with_capacity(pending.len());
        for (key, next) in pending {
            let _ =
                out.add_partition_offset(key.topic.as_str(), key.partition, Offset::Offset(next));
            inner.taken.insert(key, next);
        }
        (out.count() > 0).then_some(out)
    }

    /// Commits every uncommitted offset through `consumer`, asynchronously; a
    /// commit that cannot be sent puts them back for the next try.
    pub fn commit<C: ConsumerContext>(&self, consumer: &impl Consumer<C>) {
        if let Some(offsets) = self.take() {
            if let Err(err) = consumer.commit(&offsets, CommitMode::Async) {
                warn!(%err, "offset commit failed; kept for the next commit");
                self.restore(&offsets);
            }
        }
    }

    /// Puts offsets back after a failed commit, for partitions still assigned and
    /// where no newer offset was delivered or handed to a commit since.
    pub fn restore(&self, offsets: &TopicPartitionList) {
        let mut inner = self.lock();
        for p in offsets.elements() {
            let Offset::Offset(next) = p.offset() else {
                continue;
            };
            let key = TopicPartition::new(TopicName::trusted(p.topic()), p.partition());
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

impl Inner {
    fn push_event(&mut self, event: SubscriptionEvent) {
        if self.events.len() >= MAX_EVENTS {
            warn!("a stream is not reading its control events; dropping the oldest");
            self.events.pop_front();
        }
        self.events.push_back(event);
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
        let d = CommitTracker::default();
        let t = TopicName::trusted("t");
        d.assign(&list(&[("t", 0, None)]), &[]);
        let g = d.generation(&t, 0);
        assert!(d.mark(&t, 0, 5, g));
        assert!(d.mark(&t, 0, 3, g));
        assert_eq!(offsets_of(d.take()), vec![("t".into(), 0, 6)]);
        assert!(d.take().is_none());
    }

    #[test]
    fn a_pinned_start_is_committed_before_anything_is_delivered() {
        let d = CommitTracker::default();
        let t = TopicName::trusted("t");
        d.assign(
            &list(&[("t", 0, None), ("t", 1, None)]),
            &[Position::new(t.clone(), 1, 40)],
        );
        let first = d.take();
        assert_eq!(offsets_of(first), vec![("t".into(), 1, 40)]);
        d.restore(&list(&[("t", 1, Some(40))]));
        assert_eq!(
            offsets_of(d.revoke(&list(&[("t", 0, None), ("t", 1, None)]))),
            vec![("t".into(), 1, 40)],
            "a pinned start whose commit failed is committed on revoke"
        );
    }

    #[test]
    fn a_partition_that_starts_below_its_pin_commits_what_it_delivers() {
        let d = CommitTracker::default();
        let t = TopicName::trusted("t");
        d.assign(&list(&[("t", 0, None)]), &[Position::new(t.clone(), 0, 40)]);
        let pinned = d.take().unwrap();
        assert!(d.mark(&t, 0, 5, d.generation(&t, 0)));
        d.restore(&pinned);
        assert_eq!(
            offsets_of(d.take()),
            vec![("t".into(), 0, 6)],
            "the pin committed past a record delivered below it"
        );
    }

    #[test]
    fn records_of_an_old_assignment_are_stale() {
        let d = CommitTracker::default();
        let t = TopicName::trusted("t");
        d.assign(&list(&[("t", 0, None)]), &[]);
        let old = d.generation(&t, 0);
        assert!(d.mark(&t, 0, 1, old));
        assert_eq!(
            offsets_of(d.revoke(&list(&[("t", 0, None)]))),
            vec![("t".into(), 0, 2)]
        );
        assert!(!d.mark(&t, 0, 2, old), "revoked partition delivered");
        d.assign(&list(&[("t", 0, None)]), &[]);
        assert!(
            !d.mark(&t, 0, 2, old),
            "record of the previous assignment delivered"
        );
        assert!(d.mark(&t, 0, 2, d.generation(&t, 0)));
    }

    #[test]
    fn client_acks_commit_up_to_the_first_unacknowledged_record() {
        let d = CommitTracker::new(AckMode::Client { max_unacked: 10 });
        let t = TopicName::trusted("t");
        d.assign(&list(&[("t", 0, None)]), &[]);
        let g = d.generation(&t, 0);
        for offset in [10, 11, 12, 14] {
            assert!(d.mark(&t, 0, offset, g));
        }
        assert!(
            d.take().is_none(),
            "delivered but unacknowledged records were committable"
        );
        d.ack(&Position::new(t.clone(), 0, 11)).unwrap();
        d.ack(&Position::new(t.clone(), 0, 12)).unwrap();
        // A commit names the next record to read: 10 at most, the first
        // unacknowledged one.
        assert!(
            offsets_of(d.take()).iter().all(|(_, _, next)| *next <= 10),
            "10 is unacknowledged, nothing after it may commit"
        );
        d.ack(&Position::new(t.clone(), 0, 10)).unwrap();
        assert_eq!(offsets_of(d.take()), vec![("t".into(), 0, 14)]);
        d.ack(&Position::new(t.clone(), 0, 14)).unwrap();
        assert_eq!(offsets_of(d.take()), vec![("t".into(), 0, 15)]);
        assert!(
            d.ack(&Position::new(t.clone(), 0, 14)).is_err(),
            "acknowledged twice"
        );
        assert!(
            d.ack(&Position::new(t.clone(), 0, 99)).is_err(),
            "never delivered"
        );
        assert!(
            d.ack(&Position::new(t.clone(), 1, 0)).is_err(),
            "not assigned"
        );
    }

    #[test]
    fn client_mode_counts_unacknowledged_records_against_the_limit() {
        let d = CommitTracker::new(AckMode::Client { max_unacked: 2 });
        let t = TopicName::trusted("t");
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        d.assign(&list(&[("t", 0, None)]), &[]);
        let g = d.generation(&t, 0);
        d.mark(&t, 0, 0, g);
        assert!(d.may_deliver(&mut cx));
        d.mark(&t, 0, 1, g);
        assert!(!d.may_deliver(&mut cx));
        d.ack(&Position::new(t.clone(), 0, 0)).unwrap();
        assert!(d.may_deliver(&mut cx));
        d.revoke(&list(&[("t", 0, None)]));
        d.assign(&list(&[("t", 0, None)]), &[]);
        d.mark(&t, 0, 5, d.generation(&t, 0));
        d.mark(&t, 0, 6, d.generation(&t, 0));
        assert!(
            !d.may_deliver(&mut cx),
            "revoked records left the count wrong"
        );
        assert!(matches!(
            d.next_event(),
            Some(SubscriptionEvent::Assigned(_))
        ));
    }

    #[test]
    fn a_failed_old_commit_never_moves_the_offset_back() {
        let d = CommitTracker::default();
        let t = TopicName::trusted("t");
        d.assign(&list(&[("t", 0, None)]), &[]);
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
