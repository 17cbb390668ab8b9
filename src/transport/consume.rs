//! Consume: one subscription whose client acknowledges records on the same call.
//! The first request opens the subscription; the later ones are acks, applied
//! through its handle while its events stream back.

use super::{
    convert,
    deadline::{self, Deadline, DeadlineStream},
    proto, status, subscribe,
};
use crate::kafka::{ConsumerManager, SubscriptionHandle};
use crate::{domain::ValidationError, Error};
use futures::{Stream, StreamExt};
use std::{pin::Pin, sync::Arc};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status, Streaming};

/// Opens the subscription the first request asks for, and starts applying the
/// acks that follow it.
pub(super) async fn start(
    consumers: Arc<ConsumerManager>,
    request: Request<Streaming<proto::ConsumeRequest>>,
) -> Result<ConsumeStream, Status> {
    let deadline = Deadline::of(&request);
    let share = subscribe::share_of(&request);
    let mut requests = request.into_inner();
    let first = deadline::within(deadline, "the first ConsumeRequest arrived", async {
        Ok::<_, crate::Error>(requests.message().await)
    })
    .await?
    .map_err(status::undecodable)?;
    let Some(proto::ConsumeRequest {
        request: Some(proto::consume_request::Request::Subscribe(mut subscribe)),
    }) = first
    else {
        return Err(ValidationError::Missing {
            field: "subscribe".into(),
            message: "the first ConsumeRequest must be `subscribe`".into(),
        }
        .into());
    };
    if subscribe.ack_mode == proto::AckMode::Unspecified as i32 {
        subscribe.ack_mode = proto::AckMode::Client as i32;
    }
    let (handle, responses) = subscribe::open(&consumers, &share, deadline, subscribe).await?;
    let (rejections, rejected) = mpsc::channel(16);
    tokio::spawn(apply_acks(requests, handle, rejections));
    // The stream ends with the subscription; rejected acks join it meanwhile.
    let events = responses
        .map(|item| Some(item.map(convert::consume_event)))
        .chain(futures::stream::iter([None]));
    let merged = futures::stream::select(events, ReceiverStream::new(rejected).map(Some))
        .take_while(|item| std::future::ready(item.is_some()))
        .filter_map(std::future::ready);
    Ok(Box::pin(DeadlineStream::new(merged, deadline)))
}

/// The stream type of Consume.
pub type ConsumeStream = Pin<Box<dyn Stream<Item = Result<proto::ConsumeResponse, Status>> + Send>>;

/// Applies the acks of a Consume stream until the client closes its side; each
/// rejected ack becomes an `ack_rejected` event.
async fn apply_acks(
    mut requests: Streaming<proto::ConsumeRequest>,
    handle: SubscriptionHandle,
    rejections: mpsc::Sender<Result<proto::ConsumeResponse, Status>>,
) {
    loop {
        let next = tokio::select! {
            next = requests.message() => next,
            // The response ended (subscription over): stop reading acks.
            _ = rejections.closed() => return,
        };
        let request = match next {
            Ok(Some(request)) => request,
            // The client closed its side: no more acks; the stream goes on.
            Ok(None) => return,
            // An undecodable request ends the stream with its status.
            Err(status) => {
                let _ = rejections.send(Err(status::undecodable(status))).await;
                return;
            }
        };
        let outcome = match request.request {
            Some(proto::consume_request::Request::Ack(ack)) => {
                convert::record_positions(ack.records)
                    .map_err(Error::from)
                    .and_then(|records| handle.ack(&records))
            }
            Some(proto::consume_request::Request::Subscribe(_)) => {
                Err(ValidationError::invalid_field(
                    "subscribe",
                    "only the first ConsumeRequest may be `subscribe`; later ones are `ack`",
                )
                .into())
            }
            None => Err(ValidationError::Missing {
                field: "ack".into(),
                message: "a ConsumeRequest after the first must be `ack`".into(),
            }
            .into()),
        };
        if let Err(err) = outcome {
            let rejected = proto::ConsumeResponse {
                event: Some(proto::consume_response::Event::AckRejected(
                    status::ack_rejected(&err),
                )),
            };
            if rejections.send(Ok(rejected)).await.is_err() {
                return;
            }
        }
    }
}
