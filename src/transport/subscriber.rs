//! `SubscriberService`: validate, open a subscription through the consumer
//! manager, stream its records.

use super::{
    convert,
    deadline::{self, Deadline, DeadlineStream},
    proto,
};
use crate::kafka::ConsumerManager;
use futures::{Stream, StreamExt};
use std::{pin::Pin, sync::Arc};
use tonic::{Request, Response, Status};

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

    #[tracing::instrument(skip_all, fields(topics = ?request.get_ref().topics, group = %request.get_ref().group_id))]
    async fn subscribe(
        &self,
        request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<SubscribeStream>, Status> {
        let deadline = Deadline::from_metadata(request.metadata());
        let spec = convert::subscription(request.into_inner()).map_err(crate::Error::from)?;
        let subscription = deadline::within(
            deadline,
            "the subscription started",
            self.consumers.subscribe(spec),
        )
        .await?;
        let events =
            subscription.map(|item| item.map(convert::subscription_event).map_err(Status::from));
        Ok(Response::new(Box::pin(DeadlineStream::new(
            events, deadline,
        ))))
    }

    #[tracing::instrument(skip_all, fields(subscription = %request.get_ref().subscription_id, records = request.get_ref().records.len()))]
    async fn ack(
        &self,
        request: Request<proto::AckRequest>,
    ) -> Result<Response<proto::AckResponse>, Status> {
        let (id, records) =
            convert::ack_request(request.into_inner()).map_err(crate::Error::from)?;
        self.consumers.ack(&id, &records)?;
        Ok(Response::new(proto::AckResponse {}))
    }
}
