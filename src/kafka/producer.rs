//! The one producer of the process. Every Publish shares it, so records from many
//! requests are batched together and the broker sees one idempotent producer.

use super::record_timestamp;
use super::{metadata::TopicLookup, Error, KafkaSettings};
use crate::domain::{Delivered, OutgoingRecord, TopicName};
use futures::future::join_all;
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
};
use std::{future::Future, time::Duration};

/// Publishes records through the shared producer.
pub struct ProducerManager {
    producer: FutureProducer,
    topics: TopicLookup,
}

impl ProducerManager {
    /// Creates the shared producer. Fails on an invalid librdkafka property, so a
    /// bad `--kafka-config` stops the gateway at start-up.
    pub fn new(settings: &KafkaSettings) -> Result<ProducerManager, Error> {
        let producer: FutureProducer = settings
            .producer()
            .create()
            .map_err(|e| Error::client("producer", e))?;
        let topics = TopicLookup::through_producer(producer.clone(), settings.broker_timeout);
        Ok(ProducerManager { producer, topics })
    }

    /// Writes `records` to `topic` and waits until the broker acknowledged every one
    /// of them. Results come in request order. Records are handed to librdkafka in
    /// order, so records for one partition keep their order.
    ///
    /// On error, records other than the failed one may have been written.
    pub async fn publish(
        &self,
        topic: &TopicName,
        records: &[OutgoingRecord],
    ) -> Result<Vec<Delivered>, Error> {
        let count = records.len();
        let at = |index: usize| {
            move |source: Error| Error::Record {
                index,
                count,
                source: Box::new(source),
            }
        };
        self.topics.partition_count(topic).await?;
        for (index, record) in records.iter().enumerate() {
            if let Some(partition) = record.partition {
                self.topics
                    .check_partition(topic, partition)
                    .await
                    .map_err(at(index))?;
            }
        }
        let mut pending = Vec::with_capacity(count);
        for (index, record) in records.iter().enumerate() {
            pending.push(self.enqueue(topic, record).await.map_err(at(index))?);
        }
        join_all(pending)
            .await
            .into_iter()
            .enumerate()
            .map(|(index, outcome)| outcome.map_err(at(index)))
            .collect()
    }

    /// Hands one record to the producer, after checking its topic and partition,
    /// and returns a future of its acknowledgement. Fails at once when the producer
    /// queue is full. Records enqueued in order keep that order within a partition.
    pub async fn enqueue(
        &self,
        topic: &TopicName,
        record: &OutgoingRecord,
    ) -> Result<impl Future<Output = Result<Delivered, Error>> + Send + 'static, Error> {
        self.topics.partition_count(topic).await?;
        if let Some(partition) = record.partition {
            self.topics.check_partition(topic, partition).await?;
        }
        let delivery = self
            .producer
            .send_result(to_future_record(topic, record))
            .map_err(|(err, _)| Error::from_kafka(&err, Some(topic.as_str())))?;
        let topic = topic.clone();
        Ok(async move {
            match delivery.await {
                Ok(Ok(delivery)) => Ok(Delivered {
                    partition: delivery.partition,
                    offset: delivery.offset,
                    timestamp: record_timestamp(delivery.timestamp),
                }),
                Ok(Err((err, _))) => Err(delivery_error(&err, &topic)),
                Err(_canceled) => Err(Error::ShuttingDown),
            }
        })
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

fn to_future_record<'a>(
    topic: &'a TopicName,
    record: &'a OutgoingRecord,
) -> FutureRecord<'a, [u8], [u8]> {
    let mut future = FutureRecord::to(topic.as_str());
    if let Some(key) = &record.key {
        future = future.key(key.as_ref());
    }
    if let Some(value) = &record.value {
        future = future.payload(value.as_ref());
    }
    if let Some(partition) = record.partition {
        future = future.partition(partition);
    }
    if let Some(ms) = record.timestamp_ms {
        future = future.timestamp(ms);
    }
    if !record.headers.is_empty() {
        let headers = record.headers.iter().fold(
            OwnedHeaders::new_with_capacity(record.headers.len()),
            |headers, h| {
                headers.insert(Header {
                    key: &h.key,
                    value: h.value.as_deref(),
                })
            },
        );
        future = future.headers(headers);
    }
    future
}

fn delivery_error(err: &KafkaError, topic: &TopicName) -> Error {
    match err.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => Error::Unavailable(format!(
            "the broker did not acknowledge the record within the delivery timeout ({err}); check that Kafka is up, or raise --delivery-timeout"
        )),
        _ => Error::from_kafka(err, Some(topic.as_str())),
    }
}
