//! The stream a Subscribe RPC reads from.

use super::offsets::DeliveredOffsets;
use crate::{domain::ConsumedRecord, kafka::Error};
use futures::Stream;
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tokio::sync::mpsc;
use tokio_util::sync::WaitForCancellationFutureOwned;

/// Records of one subscription, in partition order, read ahead into a small bounded
/// buffer. A record counts as delivered, and its offset as committable, when this
/// stream yields it to the gRPC transport; records still buffered when the stream
/// is dropped are not committed and are read again by the group.
///
/// Dropping the stream (the client went away) stops the subscription: its consumer
/// commits what was delivered, leaves its group and is destroyed off the runtime.
/// At gateway shutdown the stream ends with [`Error::ShuttingDown`].
pub struct Subscription {
    records: mpsc::Receiver<Result<ConsumedRecord, Error>>,
    delivered: Option<Arc<DeliveredOffsets>>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    ended: bool,
}

impl Subscription {
    pub(super) fn new(
        records: mpsc::Receiver<Result<ConsumedRecord, Error>>,
        delivered: Option<Arc<DeliveredOffsets>>,
        shutdown: WaitForCancellationFutureOwned,
    ) -> Subscription {
        Subscription {
            records,
            delivered,
            shutdown: Box::pin(shutdown),
            ended: false,
        }
    }
}

impl Stream for Subscription {
    type Item = Result<ConsumedRecord, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        // Shutdown wins over buffered records: they are not delivered, so not
        // committed, and the group reads them again elsewhere.
        if self.shutdown.as_mut().poll(cx).is_ready() {
            self.ended = true;
            return Poll::Ready(Some(Err(Error::ShuttingDown)));
        }
        let next = self.records.poll_recv(cx);
        match &next {
            Poll::Ready(Some(Ok(record))) => {
                if let Some(delivered) = &self.delivered {
                    delivered.mark(&record.topic, record.partition, record.offset);
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => self.ended = true,
            Poll::Pending => {}
        }
        next
    }
}
