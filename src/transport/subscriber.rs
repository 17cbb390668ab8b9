//! `SubscriberService`: validate, open a subscription through the consumer
//! manager, stream its records.

use super::{
    convert,
    deadline::{self, Deadline, DeadlineStream},
    proto, status,
};
use crate::kafka::{ConsumerManager, Subscription};
use crate::{
    domain::{Excerpt, ValidationError},
    Error,
};
use futures::{Stream, StreamExt};
use std::{pin::Pin, sync::Arc};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// The stream type of Subscribe.
pub type SubscribeStream =
    Pin<Box<dyn Stream<Item = Result<proto::SubscribeResponse, Status>> + Send>>;

/// The SubscriberService implementation.
pub struct Subscriber {
    consumers: Arc<ConsumerManager>,
}

impl Subscriber {
    /// A service whose subscriptions `consumers` runs.
    pub fn new(consumers: Arc<ConsumerManager>) -> Subscriber {
        Subscriber { consumers }
    }
}

#[tonic::async_trait]
impl proto::subscriber_service_server::SubscriberService for Subscriber {
    type SubscribeStream = SubscribeStream;

    #[tracing::instrument(skip_all, fields(topics = request.get_ref().topics.len(), group = %Excerpt(&request.get_ref().group_id)))]
    async fn subscribe(
        &self,
        request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<SubscribeStream>, Status> {
        let deadline = Deadline::of(&request);
        let request = request.into_inner();
        let batch = convert::max_batch_records(request.max_batch_records)?;
        let spec = convert::subscription(request)?;
        let subscription = deadline::within(
            deadline,
            "the subscription started",
            self.consumers.subscribe(spec),
        )
        .await?;
        Ok(Response::new(Box::pin(DeadlineStream::new(
            responses(subscription, batch),
            deadline,
        ))))
    }

    #[tracing::instrument(skip_all, fields(subscription = %Excerpt(&request.get_ref().subscription_id), records = request.get_ref().records.len()))]
    async fn ack(
        &self,
        request: Request<proto::AckRequest>,
    ) -> Result<Response<proto::AckResponse>, Status> {
        let (id, records) = convert::ack_request(request.into_inner())?;
        self.consumers.ack(&id, &records)?;
        Ok(Response::new(proto::AckResponse {}))
    }

    #[tracing::instrument(skip_all, fields(group = %Excerpt(&request.get_ref().group_id), topic = %Excerpt(&request.get_ref().topic)))]
    async fn reset_offsets(
        &self,
        request: Request<proto::ResetOffsetsRequest>,
    ) -> Result<Response<proto::ResetOffsetsResponse>, Status> {
        let deadline = Deadline::of(&request);
        let (group, topic, start) = convert::reset_offsets_request(request.into_inner())?;
        let offsets = deadline::within(
            deadline,
            "the offsets were reset",
            self.consumers.reset_offsets(&group, topic, start),
        )
        .await?;
        Ok(Response::new(proto::ResetOffsetsResponse {
            offsets: convert::partition_offsets(offsets),
        }))
    }

    type ConsumeStream = ConsumeStream;

    #[tracing::instrument(skip_all)]
    async fn consume(
        &self,
        request: Request<Streaming<proto::ConsumeRequest>>,
    ) -> Result<Response<ConsumeStream>, Status> {
        let deadline = Deadline::of(&request);
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
        let batch = convert::max_batch_records(subscribe.max_batch_records)?;
        let spec = convert::subscription(subscribe)?;
        let subscription = deadline::within(
            deadline,
            "the subscription started",
            self.consumers.subscribe(spec),
        )
        .await?;
        let (rejections, rejected) = mpsc::channel(16);
        tokio::spawn(apply_acks(
            requests,
            subscription.id().map(String::from),
            self.consumers.clone(),
            rejections,
        ));
        // The stream ends with the subscription; rejected acks join it meanwhile.
        let events = responses(subscription, batch)
            .map(|item| Some(item.map(convert::consume_event)))
            .chain(futures::stream::iter([None]));
        let merged = futures::stream::select(events, ReceiverStream::new(rejected).map(Some))
            .take_while(|item| std::future::ready(item.is_some()))
            .filter_map(std::future::ready);
        Ok(Response::new(Box::pin(DeadlineStream::new(
            merged, deadline,
        ))))
    }
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

/// The stream type of Consume.
pub type ConsumeStream = Pin<Box<dyn Stream<Item = Result<proto::ConsumeResponse, Status>> + Send>>;

/// Applies the acks of a Consume stream until the client closes its side; each
/// rejected ack becomes an `ack_rejected` event.
async fn apply_acks(
    mut requests: Streaming<proto::ConsumeRequest>,
    id: Option<String>,
    consumers: Arc<ConsumerManager>,
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
        let outcome = match (request.request, &id) {
            (Some(proto::consume_request::Request::Ack(ack)), Some(id)) => {
                convert::record_positions(ack.records)
                    .map_err(Error::from)
                    .and_then(|records| consumers.ack(id, &records))
            }
            (Some(proto::consume_request::Request::Ack(_)), None) => Err(Error::AcksNotEnabled),
            (Some(proto::consume_request::Request::Subscribe(_)), _) => {
                Err(ValidationError::invalid_field(
                    "subscribe",
                    "only the first ConsumeRequest may be `subscribe`; later ones are `ack`",
                )
                .into())
            }
            (None, _) => Err(ValidationError::Missing {
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
