//! The bounded read-ahead between a pump and its subscription.
//!
//! Records cross it in batches (what the consumer had ready in one turn), so the
//! two tasks wake each other once per batch rather than once per record: a
//! per-record channel kept a full pump and its stream waking each other for every
//! record. The bound counts places: a record takes one, and one more for every
//! [`SLOT_BYTES`] of its payload (at most half the bound), so large records cannot
//! make a stream hold the bound times the largest record. A batch goes in only
//! when all its records fit, and they stop counting when the subscription has taken
//! the last of them. A batch takes about half the bound (the pump ends it once it
//! reaches half, so its last record may take it beyond), so the pump fills one
//! while the stream empties the other.

use crate::{domain::ConsumedRecord, Error};
use std::{
    sync::Arc,
    task::{Context, Poll},
};
use tokio::sync::{mpsc, Semaphore, SemaphorePermit};

/// A record on its way to the client, tagged with the assignment it was read under.
pub(super) struct TaggedRecord {
    pub record: ConsumedRecord,
    pub generation: u64,
}

/// Payload bytes a record holds per place it takes, past its first place.
pub(super) const SLOT_BYTES: usize = 4096;

/// A read-ahead of `capacity` places (at least 1).
pub(super) fn channel(capacity: usize) -> (Sender, Receiver) {
    let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
    let room = Arc::new(Semaphore::new(capacity));
    let (batches, received) = mpsc::unbounded_channel();
    (
        Sender {
            batches,
            room: room.clone(),
            capacity,
        },
        Receiver {
            batches: received,
            room,
            in_hand: Vec::new().into_iter(),
            held: 0,
        },
    )
}

/// The pump's side.
pub(super) struct Sender {
    batches: mpsc::UnboundedSender<Result<(Vec<TaggedRecord>, usize), Error>>,
    room: Arc<Semaphore>,
    capacity: usize,
}

/// Why a batch was not taken.
pub(super) enum Refused {
    /// Not all of it fits now.
    Full(Vec<TaggedRecord>),
    /// The subscription is gone.
    Closed,
}

/// Room reserved for records, to be filled by [`Sender::send_reserved`].
pub(super) struct Room<'a>(SemaphorePermit<'a>);

impl Room<'_> {
    /// How many places it holds.
    pub fn len(&self) -> usize {
        self.0.num_permits()
    }
}

impl Sender {
    /// Half the bound, at least 1: the most places a reserved batch takes, and
    /// where the pump ends a batch it reads.
    pub fn batch_limit(&self) -> usize {
        (self.capacity / 2).max(1)
    }

    /// Places `delivery` takes: one, and one per [`SLOT_BYTES`] of payload, at most
    /// the batch limit (so that any record fits).
    pub fn places(&self, delivery: &TaggedRecord) -> usize {
        (1 + delivery.record.size() / SLOT_BYTES).min(self.batch_limit())
    }

    /// Places `deliveries` take in all.
    pub fn places_of<'a>(&self, deliveries: impl IntoIterator<Item = &'a TaggedRecord>) -> usize {
        deliveries.into_iter().map(|d| self.places(d)).sum()
    }

    /// Places the first of `waiting` take, as many as fit the batch limit (at least
    /// the first): what [`Sender::reserve`] should wait for, so that none of the
    /// room goes unused.
    pub fn front_places(&self, waiting: &std::collections::VecDeque<TaggedRecord>) -> usize {
        let limit = self.batch_limit();
        let mut total = 0;
        for delivery in waiting {
            let places = self.places(delivery);
            if total > 0 && total + places > limit {
                break;
            }
            total += places;
        }
        total
    }

    /// Sends `batch` if all of it fits now.
    pub fn try_send(&self, batch: Vec<TaggedRecord>) -> Result<(), Refused> {
        let places = self.places_of(&batch);
        let n = u32::try_from(places).unwrap_or(u32::MAX);
        match self.room.try_acquire_many(n) {
            Ok(permit) => {
                permit.forget();
                self.batches
                    .send(Ok((batch, places)))
                    .map_err(|_| Refused::Closed)
            }
            Err(_) => Err(Refused::Full(batch)),
        }
    }

    /// Waits for `n` places (at most the batch limit, at least 1).
    pub async fn reserve(&self, n: usize) -> Room<'_> {
        let n = n.clamp(1, self.batch_limit());
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        // The semaphore is never closed.
        Room(self.room.acquire_many(n).await.expect("never closed"))
    }

    /// Sends as many records as `room` holds, taken from the front of `records`
    /// (at least the first, when `room` was reserved for it).
    pub fn send_reserved(
        &self,
        room: Room<'_>,
        records: &mut std::collections::VecDeque<TaggedRecord>,
    ) -> Result<(), Refused> {
        let reserved = room.len();
        let (mut count, mut used) = (0, 0);
        for delivery in records.iter() {
            let places = self.places(delivery);
            if used + places > reserved {
                break;
            }
            used += places;
            count += 1;
        }
        let batch: Vec<TaggedRecord> = records.drain(..count).collect();
        room.0.forget();
        // Room reserved beyond the records that fit goes back.
        self.room.add_permits(reserved - used);
        self.batches
            .send(Ok((batch, used)))
            .map_err(|_| Refused::Closed)
    }

    /// Sends the subscription's end; it comes after every batch sent before.
    pub fn send_error(&self, err: Error) -> Result<(), Refused> {
        self.batches.send(Err(err)).map_err(|_| Refused::Closed)
    }

    /// Completes when the subscription is gone.
    pub async fn closed(&self) {
        self.batches.closed().await
    }
}

/// The subscription's side: records one by one, in the order sent.
pub(super) struct Receiver {
    batches: mpsc::UnboundedReceiver<Result<(Vec<TaggedRecord>, usize), Error>>,
    room: Arc<Semaphore>,
    in_hand: std::vec::IntoIter<TaggedRecord>,
    /// Places the batch in hand takes up, freed once all of it was taken.
    held: usize,
}

impl Receiver {
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<TaggedRecord, Error>>> {
        loop {
            if let Some(delivery) = self.in_hand.next() {
                return Poll::Ready(Some(Ok(delivery)));
            }
            if self.held > 0 {
                self.room.add_permits(std::mem::take(&mut self.held));
            }
            match self.batches.poll_recv(cx) {
                Poll::Ready(Some(Ok((batch, places)))) => {
                    self.held = places;
                    self.in_hand = batch.into_iter();
                }
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConsumedRecord, RecordTimestamp, TopicName};
    use futures::{task::noop_waker_ref, FutureExt};
    use std::collections::VecDeque;

    fn deliveries(offsets: std::ops::Range<i64>) -> Vec<TaggedRecord> {
        offsets
            .map(|offset| TaggedRecord {
                record: ConsumedRecord {
                    topic: TopicName::trusted("t"),
                    partition: 0,
                    offset,
                    key: None,
                    value: None,
                    headers: Vec::new(),
                    timestamp: RecordTimestamp::NotAvailable,
                },
                generation: 0,
            })
            .collect()
    }

    fn offsets(reader: &mut Receiver) -> Vec<i64> {
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut seen = Vec::new();
        while let Poll::Ready(Some(Ok(delivery))) = reader.poll_next(&mut cx) {
            seen.push(delivery.record.offset);
        }
        seen
    }

    #[test]
    fn a_batch_goes_in_only_when_all_of_it_fits() {
        let (writer, mut reader) = channel(10);
        assert!(writer.try_send(deliveries(0..6)).is_ok());
        // 4 places left: a batch of 5 waits whole.
        let Err(Refused::Full(back)) = writer.try_send(deliveries(6..11)) else {
            panic!("a batch larger than the room left was taken");
        };
        assert_eq!(back.len(), 5);
        assert!(writer.try_send(deliveries(6..10)).is_ok());
        assert!(matches!(
            writer.try_send(deliveries(10..11)),
            Err(Refused::Full(_))
        ));
        // Taking the batches out frees their room, and records come in order.
        assert_eq!(offsets(&mut reader), (0..10).collect::<Vec<_>>());
        assert!(writer.try_send(deliveries(10..20)).is_ok());
        assert_eq!(offsets(&mut reader), (10..20).collect::<Vec<_>>());
    }

    fn take(reader: &mut Receiver, n: usize) -> Vec<i64> {
        let mut cx = Context::from_waker(noop_waker_ref());
        (0..n)
            .map(|_| match reader.poll_next(&mut cx) {
                Poll::Ready(Some(Ok(delivery))) => delivery.record.offset,
                _ => panic!("a record was due"),
            })
            .collect()
    }

    #[test]
    fn records_count_until_the_last_of_their_batch_is_taken() {
        let (writer, mut reader) = channel(4);
        assert!(writer.try_send(deliveries(0..2)).is_ok());
        assert!(writer.try_send(deliveries(2..4)).is_ok());
        // The first batch is in hand, one of its records not yet taken: still full.
        assert_eq!(take(&mut reader, 1), vec![0]);
        assert!(matches!(
            writer.try_send(deliveries(4..5)),
            Err(Refused::Full(_))
        ));
        // Its last record taken, it no longer counts once the reader moves on.
        assert_eq!(take(&mut reader, 2), vec![1, 2]);
        assert!(writer.try_send(deliveries(4..6)).is_ok());
        assert_eq!(offsets(&mut reader), vec![3, 4, 5]);
    }

    #[test]
    fn reserved_room_is_at_most_half_the_bound_and_returns_what_it_did_not_use() {
        let (writer, mut reader) = channel(4);
        assert_eq!(writer.batch_limit(), 2);
        let mut waiting: VecDeque<TaggedRecord> = deliveries(0..5).into();
        for left in [3, 1] {
            let room = writer.reserve(waiting.len()).now_or_never().expect("room");
            assert_eq!(room.len(), 2);
            assert!(writer.send_reserved(room, &mut waiting).is_ok());
            assert_eq!(waiting.len(), left);
        }
        // Full until the reader is done with a batch.
        assert!(writer.reserve(1).now_or_never().is_none());
        assert_eq!(take(&mut reader, 3), vec![0, 1, 2]);
        // Room for 2 was reserved for the 1 record left: 1 place goes back.
        let room = writer.reserve(2).now_or_never().expect("room");
        assert!(writer.send_reserved(room, &mut waiting).is_ok());
        assert!(waiting.is_empty());
        assert_eq!(offsets(&mut reader), vec![3, 4]);
        // All 4 places are free again.
        assert!(writer.try_send(deliveries(5..9)).is_ok());
    }

    fn large(offsets: std::ops::Range<i64>, bytes: usize) -> Vec<TaggedRecord> {
        let mut all = deliveries(offsets);
        for d in &mut all {
            d.record.value = Some(bytes::Bytes::from(vec![0u8; bytes]));
        }
        all
    }

    #[test]
    fn a_large_record_takes_a_place_per_slot_of_its_payload() {
        let (writer, mut reader) = channel(8);
        // 10 KiB: one place and two more for its payload.
        let ten_kib = large(0..1, 10 * 1024);
        assert_eq!(writer.places(&ten_kib[0]), 3);
        // A huge record takes at most half the bound, so it always fits.
        assert_eq!(writer.places(&large(0..1, 1 << 20)[0]), 4);
        assert!(writer.try_send(large(0..2, 10 * 1024)).is_ok());
        // 6 of 8 places taken: one more such record does not fit.
        assert!(matches!(
            writer.try_send(large(2..3, 10 * 1024)),
            Err(Refused::Full(_))
        ));
        assert_eq!(offsets(&mut reader), vec![0, 1]);
        // Reserved room takes the records that fit, and gives back the rest.
        let mut waiting: VecDeque<TaggedRecord> = large(2..5, 10 * 1024).into();
        // Room is reserved for the records at the front that fit the batch limit.
        assert_eq!(writer.front_places(&waiting), 3);
        let room = writer
            .reserve(writer.front_places(&waiting))
            .now_or_never()
            .expect("room");
        assert_eq!(room.len(), 3);
        assert!(writer.send_reserved(room, &mut waiting).is_ok());
        assert_eq!(waiting.len(), 2);
        // A small record before a large one is reserved for alone.
        let mut mixed: VecDeque<TaggedRecord> = deliveries(9..10).into();
        mixed.extend(large(10..11, 1 << 20));
        assert_eq!(writer.front_places(&mixed), 1);
        // 3 places in use, 5 free: one 10 KiB record (3) fits, a second does not.
        assert!(writer.try_send(large(5..6, 10 * 1024)).is_ok());
        assert!(matches!(
            writer.try_send(large(6..7, 10 * 1024)),
            Err(Refused::Full(_))
        ));
    }

    #[test]
    fn the_end_comes_after_the_records_and_a_gone_reader_closes_the_writer() {
        let (writer, mut reader) = channel(8);
        assert!(writer.try_send(deliveries(0..3)).is_ok());
        assert!(writer.send_error(Error::ShuttingDown).is_ok());
        let mut cx = Context::from_waker(noop_waker_ref());
        for offset in 0..3 {
            assert!(matches!(
                reader.poll_next(&mut cx),
                Poll::Ready(Some(Ok(TaggedRecord { record, .. }))) if record.offset == offset
            ));
        }
        assert!(matches!(
            reader.poll_next(&mut cx),
            Poll::Ready(Some(Err(Error::ShuttingDown)))
        ));
        drop(reader);
        assert!(writer.closed().now_or_never().is_some());
        assert!(matches!(
            writer.try_send(deliveries(3..4)),
            Err(Refused::Closed)
        ));
    }
}
