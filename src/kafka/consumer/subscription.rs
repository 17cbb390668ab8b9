//! The stream a Subscribe RPC reads from.

use super::{
    fanout::FeedReader,
    offsets::CommitTracker,
    readahead::{self, TaggedRecord},
    share::ShareSlot,
};
use crate::{
    domain::{Position, SubscriptionEvent},
    Error,
};
use futures::Stream;
use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Weak,
    },
    task::{Context, Poll},
};
use tokio_util::sync::WaitForCancellationFutureOwned;

/// Events of one subscription: records in partition order, and for group
/// subscriptions partition assignment changes. Records are read ahead into a small bounded
/// buffer. For a group subscription a record counts as delivered, and its offset as
/// committable, when this stream yields it to the gRPC transport; records of a
/// partition revoked while they waited here are dropped (another member reads
/// them), and records still buffered when the stream is dropped are not committed.
///
/// Dropping the stream (the client went away) stops the subscription: its consumer
/// commits what was delivered, leaves its group and is destroyed off the runtime.
/// At gateway shutdown the stream ends with [`Error::ShuttingDown`].
pub struct Subscription {
    records: Source,
    delivered: Option<Arc<CommitTracker>>,
    /// Id of a client-acknowledged subscription.
    id: Option<String>,
    /// Sent first, for client-acknowledged subscriptions.
    started: Option<String>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    ended: bool,
    /// Set once shutdown began; cheaper to read on every poll than the token.
    stopping: Arc<AtomicBool>,
    /// Its place in its connection's share of consumers, if it has its own.
    _place: Option<ShareSlot>,
}

/// Where a subscription's records come from.
pub(super) enum Source {
    /// Its own consumer's pump.
    Own(readahead::Receiver),
    /// Live feeds shared with other streams.
    Shared(FeedReader),
}

impl Source {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<TaggedRecord, Error>>> {
        match self {
            Source::Own(records) => records.poll_next(cx),
            Source::Shared(reader) => reader.poll_next(cx).map(|next| {
                Some(next.map(|record| TaggedRecord {
                    record,
                    generation: 0,
                }))
            }),
        }
    }
}

impl Subscription {
    pub(super) fn new(
        records: Source,
        delivered: Option<Arc<CommitTracker>>,
        started: Option<String>,
        shutdown: WaitForCancellationFutureOwned,
        stopping: Arc<AtomicBool>,
    ) -> Subscription {
        Subscription {
            records,
            delivered,
            id: started.clone(),
            started,
            shutdown: Box::pin(shutdown),
            ended: false,
            stopping,
            _place: None,
        }
    }

    /// The subscription, holding `place` until it is dropped.
    pub(super) fn holding(mut self, place: ShareSlot) -> Subscription {
        self._place = Some(place);
        self
    }

    /// A handle for commands to this subscription while it runs.
    pub fn handle(&self) -> SubscriptionHandle {
        SubscriptionHandle {
            id: self.id.clone(),
            acks: self
                .id
                .as_ref()
                .and(self.delivered.as_ref())
                .map(Arc::downgrade),
        }
    }

    /// Pending, with the waker registered for shutdown too; or the end, when the
    /// gateway is shutting down.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<SubscriptionEvent, Error>>> {
        if self.shutdown.as_mut().poll(cx).is_ready() {
            self.ended = true;
            return Poll::Ready(Some(Err(Error::ShuttingDown)));
        }
        Poll::Pending
    }
}

impl Stream for Subscription {
    type Item = Result<SubscriptionEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        // Shutdown wins over buffered records: they are not delivered, so not
        // committed, and the group reads them again elsewhere. Read from a flag:
        // the token's own check takes a lock, too dear on every record.
        if self.stopping.load(Ordering::Acquire) {
            self.ended = true;
            return Poll::Ready(Some(Err(Error::ShuttingDown)));
        }
        if let Some(id) = self.started.take() {
            return Poll::Ready(Some(Ok(SubscriptionEvent::Started(id))));
        }
        if let Some(delivered) = &self.delivered {
            // Control events go before records, so an assignment is announced
            // before its records; a client at its unacked limit gets no records
            // until it acknowledges (the buffer fills and the pump pauses).
            let may_deliver = delivered.may_deliver(cx);
            if let Some(event) = delivered.next_event() {
                return Poll::Ready(Some(Ok(event)));
            }
            if !may_deliver {
                return self.wait(cx);
            }
        }
        loop {
            return match self.records.poll_next(cx) {
                Poll::Ready(Some(Ok(TaggedRecord { record, generation }))) => {
                    let current = self.delivered.as_ref().is_none_or(|d| {
                        d.mark(&record.topic, record.partition, record.offset, generation)
                    });
                    if !current {
                        continue;
                    }
                    Poll::Ready(Some(Ok(SubscriptionEvent::Record(record))))
                }
                Poll::Ready(Some(Err(err))) => {
                    self.ended = true;
                    Poll::Ready(Some(Err(err)))
                }
                Poll::Ready(None) => {
                    // A pump ends without an error only when the client left or the
                    // gateway is shutting down: the latter ends the stream with its
                    // status, whichever the stream saw first.
                    if let Poll::Ready(end) = self.wait(cx) {
                        return Poll::Ready(end);
                    }
                    self.ended = true;
                    Poll::Ready(None)
                }
                Poll::Pending => self.wait(cx),
            };
        }
    }
}

/// Commands to a running subscription, apart from the stream of its events: the
/// stream moves into the response while the caller keeps this (Consume applies a
/// client's acks through it). Seeking and negative acks will join acks here.
/// It does not keep the subscription alive.
#[derive(Debug, Clone)]
pub struct SubscriptionHandle {
    id: Option<String>,
    acks: Option<Weak<CommitTracker>>,
}

impl SubscriptionHandle {
    /// The id acknowledgements name, for a client-acknowledged subscription.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Applies a client's acknowledgements, in order, up to the first one that fails.
    pub fn ack(&self, records: &[Position]) -> Result<(), Error> {
        let (Some(id), Some(acks)) = (&self.id, &self.acks) else {
            return Err(Error::AcksNotEnabled);
        };
        let tracker = acks
            .upgrade()
            .ok_or_else(|| Error::UnknownSubscription(id.clone()))?;
        apply_acks(&tracker, records)
    }
}

/// Applies `records` to `tracker` in order, up to the first that fails.
pub(super) fn apply_acks(tracker: &CommitTracker, records: &[Position]) -> Result<(), Error> {
    records
        .iter()
        .try_for_each(|position| tracker.ack(position))
}
