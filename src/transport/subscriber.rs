//! `SubscriberService`: validate, open a subscription through the consumer
//! manager, stream its records. Subscribe and Consume open theirs the same way
//! ([`subscribe`]); Consume's loop of acks is in [`consume`].

use super::{
    consume::{self, ConsumeStream},
    convert,
    deadline::{self, Deadline, DeadlineStream},
    proto,
    subscribe::{self, SubscribeStream},
};
use crate::domain::Excerpt;
use crate::kafka::{Admin, ConsumerManager};
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

/// The SubscriberService implementation.
pub struct Subscriber {
    consumers: Arc<ConsumerManager>,
    admin: Arc<Admin>,
}

impl Subscriber {
    /// A service whose subscriptions `consumers` runs, and whose offset resets
    /// `admin` does.
    pub fn new(consumers: Arc<ConsumerManager>, admin: Arc<Admin>) -> Subscriber {
        Subscriber { consumers, admin }
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
        let share = subscribe::share_of(&request);
        let (_, responses) =
            subscribe::open(&self.consumers, &share, deadline, request.into_inner()).await?;
        Ok(Response::new(Box::pin(DeadlineStream::new(
            responses, deadline,
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
            self.admin.reset_offsets(&group, topic, start),
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
        consume::start(self.consumers.clone(), request)
            .await
            .map(Response::new)
    }
}
