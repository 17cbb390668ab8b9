//! Opening a subscription, the same way for Subscribe and Consume, and its events
//! as responses.

use super::{convert, deadline, deadline::Deadline, proto};
use crate::kafka::{ConsumerManager, ConsumerShare, Subscription, SubscriptionHandle};
use futures::{Stream, StreamExt};
use std::pin::Pin;
use tonic::Status;

/// The stream type of Subscribe.
pub type SubscribeStream =
    Pin<Box<dyn Stream<Item = Result<proto::SubscribeResponse, Status>> + Send>>;

/// The share of consumers of the connection `request` came on (the HTTP/2 server
/// puts it in every request's extensions).
pub(super) fn share_of<T>(request: &tonic::Request<T>) -> ConsumerShare {
    request
        .extensions()
        .get::<ConsumerShare>()
        .cloned()
        .unwrap_or_default()
}

/// Validates `request` and starts its subscription within the client's deadline,
/// in `share`; returns the handle for commands and the events as responses.
pub(super) async fn open(
    consumers: &ConsumerManager,
    share: &ConsumerShare,
    deadline: Option<Deadline>,
    request: proto::SubscribeRequest,
) -> Result<(SubscriptionHandle, SubscribeStream), Status> {
    let batch = convert::max_batch_records(request.max_batch_records)?;
    let spec = convert::subscription(request)?;
    let (handle, subscription) = deadline::within(
        deadline,
        "the subscription started",
        consumers.subscribe(spec, share),
    )
    .await?;
    Ok((handle, responses(subscription, batch)))
}

/// A subscription's events as responses: one record per response, or with `batch`
/// the records that are ready together joined into `records` responses.
fn responses(subscription: Subscription, batch: Option<usize>) -> SubscribeStream {
    match batch {
        None => Box::pin(
            subscription.map(|item| item.map(convert::subscription_event).map_err(Status::from)),
        ),
        Some(max) => Box::pin(subscription.ready_chunks(max).flat_map(|ready| {
            futures::stream::iter(
                convert::batched_events(ready)
                    .into_iter()
                    .map(|item| item.map_err(Status::from)),
            )
        })),
    }
}
