//! `PublisherService`: validate, publish through the shared producer, answer.

use super::{
    convert,
    deadline::{self, Deadline},
    proto,
};
use crate::kafka::ProducerManager;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The PublisherService implementation.
pub struct Publisher {
    producer: Arc<ProducerManager>,
    max_message_bytes: usize,
}

impl Publisher {
    /// A service publishing through `producer`.
    pub fn new(producer: Arc<ProducerManager>, max_message_bytes: usize) -> Publisher {
        Publisher {
            producer,
            max_message_bytes,
        }
    }
}

#[tonic::async_trait]
impl proto::publisher_service_server::PublisherService for Publisher {
    #[tracing::instrument(skip_all, fields(topic = %request.get_ref().topic, records = request.get_ref().records.len()))]
    async fn publish(
        &self,
        request: Request<proto::PublishRequest>,
    ) -> Result<Response<proto::PublishResponse>, Status> {
        let deadline = Deadline::from_metadata(request.metadata());
        let (topic, records) =
            convert::publish_request(request.into_inner(), self.max_message_bytes)
                .map_err(crate::Error::from)?;
        let delivered = deadline::within(
            deadline,
            "the broker acknowledged every record (they may still be written)",
            self.producer.publish(&topic, &records),
        )
        .await?;
        Ok(Response::new(convert::publish_response(delivered)))
    }
}
