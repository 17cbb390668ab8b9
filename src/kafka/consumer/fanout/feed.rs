//! The live feed of one partition: the records a shared consumer read, kept in a
//! bounded ring that any number of streams read at their own pace.
//!
//! The feed moves at the pace of its fastest stream. Records that stream has read
//! stay in the ring, up to its byte budget, for the streams behind it; a stream
//! that falls further behind than the ring reaches has lost records it must not
//! skip, so it ends with an error telling where to resume, and the others go on.
//! Records the fastest stream has not read yet are never dropped: when they take
//! half the budget, the feed is full and its reader stops taking records from
//! Kafka until the fastest stream has read most of them.

use crate::{
    domain::{ConsumedRecord, TopicName, TopicPartition},
    Error,
};
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
};
use tokio::sync::Notify;

/// Bytes a buffered record costs beyond its key, value and headers (the record
/// and ring bookkeeping), so that budgets hold for tiny records too.
const RECORD_OVERHEAD: usize = 160;

/// One partition's records, shared by the streams that read it.
pub(super) struct Feed {
    pub topic: TopicName,
    pub partition: i32,
    budget: usize,
    /// Tells the feed's reader that a full feed has room again.
    room: Arc<Notify>,
    ring: Mutex<Ring>,
}

struct Ring {
    records: VecDeque<ConsumedRecord>,
    /// Sequence number of `records[0]`; every appended record takes the next one.
    first_seq: u64,
    bytes: usize,
    /// One past the newest record any stream has read: the fastest stream's place.
    read_seq: u64,
    /// Bytes of the records from `read_seq` on.
    unread_bytes: usize,
    /// Full: the reader takes no more records until the fastest stream caught up.
    full: bool,
    /// The offset the feed reads next: the start, then one past the last record.
    /// Anything older that arrives (a fetch from before an assignment change) is a
    /// duplicate and dropped.
    next_offset: i64,
    /// Streams waiting for a record, by reader id.
    waiting: HashMap<u64, Waker>,
    /// Set when the consumer failed this partition: every reader ends with it.
    failed: Option<Error>,
}

/// Where one stream is in one feed.
pub(super) struct Cursor {
    next_seq: u64,
    /// Records before this offset are not the stream's (it started later).
    start: i64,
}

/// What a poll of a feed found.
pub(super) enum Next {
    Record(ConsumedRecord),
    /// Nothing new; the reader's waker is registered.
    Pending,
    Failed(Error),
}

impl Feed {
    /// The partition this feed holds, as a registry key.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }

    /// A feed whose consumer starts reading the partition at `start`, keeping about
    /// `budget` bytes of records; `room` is notified when a full feed has room.
    pub fn new(
        topic: TopicName,
        partition: i32,
        start: i64,
        budget: usize,
        room: Arc<Notify>,
    ) -> Feed {
        Feed {
            topic,
            partition,
            budget,
            room,
            ring: Mutex::new(Ring {
                records: VecDeque::new(),
                first_seq: 0,
                bytes: 0,
                read_seq: 0,
                unread_bytes: 0,
                full: false,
                next_offset: start,
                waiting: HashMap::new(),
                failed: None,
            }),
        }
    }

    /// A cursor for a stream starting at `start`, or `None` when the feed no longer
    /// holds records that far back (or failed): that stream needs its own consumer.
    pub fn cursor(&self, start: i64) -> Option<Cursor> {
        let ring = self.lock();
        if ring.failed.is_some() {
            return None;
        }
        let oldest = ring.records.front().map_or(ring.next_offset, |r| r.offset);
        if start < oldest {
            return None;
        }
        // Records are in offset order: skip those before `start`.
        let skip = ring.records.partition_point(|r| r.offset < start);
        // In the oldest quarter of a full ring, the next records would push the
        // stream out at once: it reads better with a consumer of its own.
        if ring.bytes > self.budget * 3 / 4 && skip < ring.records.len() / 4 {
            return None;
        }
        Some(Cursor {
            next_seq: ring.first_seq + skip as u64,
            start,
        })
    }

    /// Takes `cursor` as a stream's place: a stream that joins ahead of the others
    /// is the fastest from now on. Separate from [`Feed::cursor`], so a stream that
    /// finds no place in another partition leaves this feed untouched.
    pub fn claim(&self, cursor: &Cursor) {
        let mut ring = self.lock();
        self.advance(&mut ring, cursor.next_seq);
    }

    /// The offset the feed reads next.
    pub fn next_offset(&self) -> i64 {
        self.lock().next_offset
    }

    /// What is notified when a full feed has room again.
    pub fn room(&self) -> Arc<Notify> {
        self.room.clone()
    }

    /// Whether the feed is full: its reader should wait for [`Feed::room`].
    pub fn full(&self) -> bool {
        self.lock().full
    }

    /// Appends a record the consumer read and wakes the streams waiting for one.
    /// Returns `true` when the feed is full: its reader should take no more until
    /// [`Feed::full`] turns false.
    pub fn push(&self, record: ConsumedRecord) -> bool {
        let (wake, filled) = {
            let mut ring = self.lock();
            if record.offset < ring.next_offset || ring.failed.is_some() {
                return false;
            }
            ring.next_offset = record.offset + 1;
            let size = size(&record);
            ring.bytes += size;
            ring.unread_bytes += size;
            ring.records.push_back(record);
            self.evict(&mut ring);
            let filled = !ring.full && ring.unread_bytes > self.budget / 2;
            ring.full |= filled;
            let wake: Vec<Waker> = ring.waiting.drain().map(|(_, waker)| waker).collect();
            (wake, filled)
        };
        wake.into_iter().for_each(Waker::wake);
        filled
    }

    /// Ends every stream of this feed with `error`, after the records they still
    /// have to read.
    pub fn fail(&self, error: Error) {
        let wake: Vec<Waker> = {
            let mut ring = self.lock();
            ring.failed.get_or_insert(error);
            ring.waiting.drain().map(|(_, waker)| waker).collect()
        };
        wake.into_iter().for_each(Waker::wake);
    }

    /// The next record for `cursor`, registering `reader`'s waker when there is
    /// none yet.
    pub fn poll_next(&self, cursor: &mut Cursor, reader: u64, cx: &Context<'_>) -> Next {
        let mut ring = self.lock();
        loop {
            if cursor.next_seq < ring.first_seq {
                let resume = ring.records.front().map_or(ring.next_offset, |r| r.offset);
                return Next::Failed(Error::FellBehind {
                    topic: self.topic.to_string(),
                    partition: self.partition,
                    resume_offset: resume,
                });
            }
            let at = (cursor.next_seq - ring.first_seq) as usize;
            let Some(record) = ring.records.get(at) else {
                break;
            };
            let record = record.clone();
            cursor.next_seq += 1;
            self.advance(&mut ring, cursor.next_seq);
            // Records before the stream's start are not its own.
            if record.offset >= cursor.start {
                return Next::Record(record);
            }
        }
        if let Some(error) = &ring.failed {
            return Next::Failed(error.clone());
        }
        ring.waiting.insert(reader, cx.waker().clone());
        Next::Pending
    }

    /// Forgets a reader that stopped reading.
    pub fn forget(&self, reader: u64) {
        self.lock().waiting.remove(&reader);
    }

    /// A stream reached `seq`: if it is now the fastest, what it passed may go,
    /// and a full feed may take records again.
    fn advance(&self, ring: &mut Ring, seq: u64) {
        if seq <= ring.read_seq {
            return;
        }
        let from = ring.read_seq.max(ring.first_seq);
        let passed: usize = (from..seq)
            .filter_map(|s| ring.records.get((s - ring.first_seq) as usize))
            .map(size)
            .sum();
        ring.unread_bytes -= passed;
        ring.read_seq = seq;
        self.evict(ring);
        if ring.full && ring.unread_bytes <= self.budget / 4 {
            ring.full = false;
            self.room.notify_one();
        }
    }

    /// Drops the oldest records the fastest stream has read while over budget.
    fn evict(&self, ring: &mut Ring) {
        while ring.bytes > self.budget && ring.first_seq < ring.read_seq {
            let oldest = ring.records.pop_front().expect("read records are held");
            ring.bytes -= size(&oldest);
            ring.first_seq += 1;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().expect("feed lock")
    }
}

/// Bytes a buffered record counts against the budget: its payload, and what holding
/// it costs besides, per record and per header (a record of many empty headers
/// has no payload but still takes memory).
fn size(record: &ConsumedRecord) -> usize {
    RECORD_OVERHEAD
        + record.size()
        + record.headers.len() * std::mem::size_of::<crate::domain::Header>()
}

/// Polls a subscription's cursors in turn, so one busy partition does not starve
/// the others.
pub(super) fn poll_cursors(
    cursors: &mut [(Arc<Feed>, Cursor)],
    turn: &mut usize,
    reader: u64,
    cx: &mut Context<'_>,
) -> Poll<Result<ConsumedRecord, Error>> {
    let n = cursors.len();
    for i in 0..n {
        let index = (*turn + i) % n;
        let (feed, cursor) = &mut cursors[index];
        match feed.poll_next(cursor, reader, cx) {
            Next::Record(record) => {
                *turn = index + 1;
                return Poll::Ready(Ok(record));
            }
            Next::Failed(error) => return Poll::Ready(Err(error)),
            Next::Pending => {}
        }
    }
    Poll::Pending
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RecordTimestamp;
    use futures::task::noop_waker_ref;

    fn record(offset: i64) -> ConsumedRecord {
        ConsumedRecord {
            topic: TopicName::trusted("t"),
            partition: 0,
            offset,
            key: None,
            value: Some(vec![0u8; 40].into()),
            headers: Vec::new(),
            timestamp: RecordTimestamp::NotAvailable,
        }
    }

    /// A feed holding about ten records (200 bytes each with overhead).
    fn feed() -> (Feed, Arc<Notify>) {
        let room = Arc::new(Notify::new());
        let feed = Feed::new(TopicName::trusted("t"), 0, 0, 2000, room.clone());
        (feed, room)
    }

    fn next(feed: &Feed, cursor: &mut Cursor, reader: u64) -> Next {
        feed.poll_next(cursor, reader, &Context::from_waker(noop_waker_ref()))
    }

    fn offset(next: Next) -> i64 {
        match next {
            Next::Record(record) => record.offset,
            Next::Pending => panic!("pending"),
            Next::Failed(error) => panic!("failed: {error}"),
        }
    }

    #[test]
    fn headers_count_against_the_budget_even_when_empty() {
        let plain = record(0);
        let mut headed = record(0);
        headed.headers = (0..100)
            .map(|_| crate::domain::Header {
                key: String::new(),
                value: None,
            })
            .collect();
        // No payload in the headers, but each takes memory.
        assert_eq!(headed.size(), plain.size());
        assert!(
            size(&headed) >= size(&plain) + 100 * 24,
            "{}",
            size(&headed)
        );
    }

    #[test]
    fn the_fastest_stream_never_loses_a_record_and_a_slow_one_fails_without_gaps() {
        let (feed, _) = feed();
        let mut fast = feed.cursor(0).unwrap();
        feed.claim(&fast);
        let mut slow = feed.cursor(0).unwrap();
        feed.claim(&slow);
        feed.push(record(0));
        assert_eq!(offset(next(&feed, &mut slow, 2)), 0);
        assert_eq!(offset(next(&feed, &mut fast, 1)), 0);
        for n in 1..100 {
            feed.push(record(n));
            assert_eq!(offset(next(&feed, &mut fast, 1)), n);
        }
        assert!(matches!(
            next(&feed, &mut slow, 2),
            Next::Failed(Error::FellBehind { .. })
        ));
    }

    #[test]
    fn unread_records_stay_and_fill_the_feed_until_read() {
        let (feed, _) = feed();
        let mut only = feed.cursor(0).unwrap();
        feed.claim(&only);
        let filled: Vec<bool> = (0..30).map(|n| feed.push(record(n))).collect();
        // Full once, past half the budget, and never dropped a record.
        assert_eq!(filled.iter().filter(|f| **f).count(), 1);
        assert!(filled[5] && feed.full());
        for n in 0..30 {
            assert_eq!(offset(next(&feed, &mut only, 1)), n);
        }
        assert!(!feed.full(), "room again once read");
        assert!(matches!(next(&feed, &mut only, 1), Next::Pending));
    }

    #[test]
    fn a_stream_joining_at_the_end_frees_a_feed_its_slow_reader_filled() {
        let (feed, _) = feed();
        let slow = feed.cursor(0).unwrap();
        feed.claim(&slow);
        for n in 0..30 {
            feed.push(record(n));
        }
        assert!(feed.full());
        let latest = feed.cursor(30).unwrap();
        assert!(feed.next_offset() == 30);
        feed.claim(&latest);
        assert!(!feed.full(), "the newcomer is the fastest now");
    }

    #[test]
    fn starts_before_the_feed_need_their_own_consumer_and_later_ones_skip_ahead() {
        let room = Arc::new(Notify::new());
        let feed = Feed::new(TopicName::trusted("t"), 0, 10, 2000, room);
        assert!(feed.cursor(9).is_none());
        let mut ahead = feed.cursor(12).unwrap();
        feed.claim(&ahead);
        for n in 10..14 {
            feed.push(record(n));
        }
        assert_eq!(offset(next(&feed, &mut ahead, 1)), 12);
        // A duplicate from an older fetch is dropped.
        feed.push(record(11));
        assert_eq!(offset(next(&feed, &mut ahead, 1)), 13);
    }
}
