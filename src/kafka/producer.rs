//! The one producer of the process. Every Publish shares it, so records from many
//! requests are batched together and the broker sees one idempotent producer.
//!
//! librdkafka's delivery report for each record (on the producer's polling thread,
//! or the thread that flushes it) goes to an [`AckCollector`] that the
//! batched Publish or PublishStream waiting for it drains in batches: no channel,
//! future or wakeup per record.

use super::{metadata::TopicLookup, record, Error, KafkaSettings};
use crate::{
    domain::{OutgoingRecord, Placement, TopicName},
    error::BatchFailure,
};
use futures::task::AtomicWaker;
use rdkafka::{
    client::ClientContext,
    error::{KafkaError, RDKafkaErrorCode},
    message::Message,
    producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer},
};
use std::{
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

/// A record's acknowledgement, or why it failed.
pub type Outcome = Result<Placement, Error>;

/// Where librdkafka's answer for one record goes: a collector, under the
/// caller's tag.
struct Target {
    deliveries: Arc<AckCollector>,
    tag: u64,
}

/// Collects the acknowledgements of many records as they come, for one reader.
#[derive(Default)]
pub struct AckCollector {
    ready: Mutex<Vec<(u64, Outcome)>>,
    waker: AtomicWaker,
}

impl AckCollector {
    fn push(&self, tag: u64, outcome: Outcome) {
        self.ready
            .lock()
            .expect("deliveries lock")
            .push((tag, outcome));
        self.waker.wake();
    }

    /// Every acknowledgement that came since the last call, with the tags the
    /// records were sent with; pending (and woken later) while there is none.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Vec<(u64, Outcome)>> {
        self.waker.register(cx.waker());
        let mut ready = self.ready.lock().expect("deliveries lock");
        if ready.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(std::mem::take(&mut *ready))
        }
    }

    /// [`AckCollector::poll_ready`] as a future.
    pub async fn ready(&self) -> Vec<(u64, Outcome)> {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }
}

/// Routes each delivery report to its record's [`Target`].
struct Router;

impl ClientContext for Router {}

impl ProducerContext for Router {
    type DeliveryOpaque = Box<Target>;

    fn delivery(&self, result: &DeliveryResult<'_>, target: Box<Target>) {
        let outcome = match result {
            Ok(message) => Ok(record::placement(message)),
            Err((err, message)) => Err(delivery_error(err, message.topic())),
        };
        target.deliveries.push(target.tag, outcome);
    }
}

/// Publishes records through the shared producer.
pub struct ProducerManager {
    producer: ThreadedProducer<Router>,
    topics: TopicLookup,
}

impl ProducerManager {
    /// Creates the shared producer. Fails on an invalid librdkafka property, so a
    /// bad `--kafka-config` stops the gateway at start-up.
    pub fn new(settings: &KafkaSettings) -> Result<ProducerManager, Error> {
        let producer: ThreadedProducer<Router> = settings
            .producer()
            .create_with_context(Router)
            .map_err(|e| Error::client("producer", e))?;
        // Lookups through the producer's own client, so a broker that creates
        // topics on first use does so, as it would for any Kafka producer.
        let lookups = producer.clone();
        let topics = TopicLookup::new(
            Arc::new(move |topic, t| lookups.client().fetch_metadata(Some(topic), t)),
            settings.kafka.broker_timeout,
        );
        Ok(ProducerManager { producer, topics })
    }

    /// Writes `records` to `topic` and waits until the broker acknowledged every one
    /// of them. Results come in request order. Records are handed to librdkafka in
    /// order, so records for one partition keep their order.
    ///
    /// A failure of the topic fails the call before any record is written. Any
    /// other comes as a [`BatchFailure`] that says which records failed and which
    /// were written anyway.
    pub async fn publish(
        &self,
        topic: &TopicName,
        records: &[OutgoingRecord],
    ) -> Result<Vec<Placement>, crate::Error> {
        let count = records.len();
        let batch = |failed, written| {
            crate::Error::Batch(Box::new(BatchFailure {
                count,
                failed,
                written,
            }))
        };
        self.topics.partition_count(topic).await?;
        // All checked before any record is written.
        let mut failed = Vec::new();
        for (index, record) in records.iter().enumerate() {
            if let Some(partition) = record.partition {
                if let Err(err) = self.topics.check_partition(topic, partition).await {
                    failed.push((index, err.into()));
                }
            }
        }
        if !failed.is_empty() {
            return Err(batch(failed, Vec::new()));
        }
        let deliveries = Arc::new(AckCollector::default());
        // A record librdkafka does not take (its queue is full) stops the batch:
        // the records after it are not handed to Kafka at all.
        let mut refused = None;
        for (index, record) in records.iter().enumerate() {
            if let Err(err) = self.send(topic, record, &deliveries, index as u64) {
                refused = Some((index, err));
                break;
            }
        }
        let sent = refused.as_ref().map_or(count, |(index, _)| *index);
        // librdkafka answers every record it took: delivered, failed, timed out, or
        // purged when the producer is destroyed.
        let mut outcomes: Vec<Option<Outcome>> = (0..sent).map(|_| None).collect();
        let mut answered = 0;
        while answered < sent {
            for (tag, outcome) in deliveries.ready().await {
                outcomes[tag as usize] = Some(outcome);
                answered += 1;
            }
        }
        let mut written = Vec::with_capacity(sent);
        for (index, outcome) in outcomes.into_iter().enumerate() {
            match outcome.expect("every record answered") {
                Ok(placement) => written.push((index, placement)),
                Err(err) => failed.push((index, err.into())),
            }
        }
        if let Some((index, err)) = refused {
            failed.push((index, err.into()));
        }
        if failed.is_empty() {
            return Ok(written
                .into_iter()
                .map(|(_, placement)| placement)
                .collect());
        }
        Err(batch(failed, written))
    }

    /// Hands one record to the producer, after checking its topic and partition;
    /// its acknowledgement goes to `deliveries` under `tag`. Fails at once when the
    /// producer queue is full (and nothing goes to `deliveries`).
    pub async fn enqueue_to(
        &self,
        topic: &TopicName,
        record: &OutgoingRecord,
        deliveries: &Arc<AckCollector>,
        tag: u64,
    ) -> Result<(), Error> {
        self.topics.partition_count(topic).await?;
        if let Some(partition) = record.partition {
            self.topics.check_partition(topic, partition).await?;
        }
        self.send(topic, record, deliveries, tag)
    }

    /// Hands one record whose topic and partition were checked to librdkafka.
    fn send(
        &self,
        topic: &TopicName,
        record: &OutgoingRecord,
        deliveries: &Arc<AckCollector>,
        tag: u64,
    ) -> Result<(), Error> {
        self.producer
            .send(record::outgoing(
                topic,
                record,
                Box::new(Target {
                    deliveries: deliveries.clone(),
                    tag,
                }),
            ))
            // librdkafka did not take the record: it comes back with its target,
            // which is dropped unanswered, and the caller answers the error.
            .map_err(|(err, _)| Error::from_kafka(&err, Some(topic.as_str())))
    }

    /// Waits up to `timeout` for every queued record to be acknowledged.
    pub async fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| Error::Other(e.to_string()))?
            .map_err(|e| Error::from_kafka(&e, None))
    }

    /// Records queued in the producer and not yet acknowledged.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }
}

fn delivery_error(err: &KafkaError, topic: &str) -> Error {
    match err.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => Error::Unavailable(format!(
            "the broker did not acknowledge the record within the delivery timeout ({err}); check that Kafka is up, or raise --delivery-timeout"
        )),
        _ => Error::from_kafka(err, Some(topic)),
    }
}
