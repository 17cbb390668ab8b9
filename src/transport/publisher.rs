//! `PublisherService`: validate, publish through the shared producer, answer.

use super::{
    convert,
    deadline::{self, Deadline, DeadlineStream},
    proto, publish_stream, StreamLimits,
};
use crate::domain::Excerpt;
use crate::kafka::ProducerManager;
use futures::{Stream, StreamExt};
use std::{pin::Pin, sync::Arc};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// The stream type of PublishStream.
pub type PublishStreamStream =
    Pin<Box<dyn Stream<Item = Result<proto::PublishStreamResponse, Status>> + Send>>;

/// The PublisherService implementation.
pub struct Publisher {
    producer: Arc<ProducerManager>,
    limits: StreamLimits,
    shutdown: CancellationToken,
}

impl Publisher {
    /// A service publishing through `producer`; its streams end when `shutdown`
    /// is cancelled.
    pub fn new(
        producer: Arc<ProducerManager>,
        limits: StreamLimits,
        shutdown: CancellationToken,
    ) -> Publisher {
        Publisher {
            producer,
            limits,
            shutdown,
        }
    }
}

#[tonic::async_trait]
impl proto::publisher_service_server::PublisherService for Publisher {
    #[tracing::instrument(skip_all, fields(topic = %Excerpt(&request.get_ref().topic), records = request.get_ref().records.len()))]
    async fn publish(
        &self,
        request: Request<proto::PublishRequest>,
    ) -> Result<Response<proto::PublishResponse>, Status> {
        let deadline = Deadline::of(&request);
        let (topic, records) =
            convert::publish_request(request.into_inner(), self.limits.max_message_bytes)
                .map_err(crate::Error::from)?;
        let delivered = deadline::within(
            deadline,
            "the broker acknowledged every record (they may still be written)",
            self.producer.publish(&topic, &records),
        )
        .await?;
        Ok(Response::new(convert::publish_response(delivered)))
    }

    type PublishStreamStream = PublishStreamStream;

    #[tracing::instrument(skip_all)]
    async fn publish_stream(
        &self,
        request: Request<Streaming<proto::PublishStreamRequest>>,
    ) -> Result<Response<PublishStreamStream>, Status> {
        let deadline = Deadline::of(&request);
        // Answers travel in batches, those that were ready together: a channel
        // operation per answer showed in profiles.
        let (answers, responses) = mpsc::channel(publish_stream::ANSWER_BATCHES);
        tokio::spawn(publish_stream::run(
            request.into_inner(),
            answers,
            self.producer.clone(),
            self.limits,
            self.shutdown.clone(),
        ));
        Ok(Response::new(Box::pin(DeadlineStream::new(
            ReceiverStream::new(responses).flat_map(futures::stream::iter),
            deadline,
        ))))
    }
}
