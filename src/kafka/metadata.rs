//! Topic and offset lookups. librdkafka answers them with blocking calls, so they
//! run on tokio's blocking pool, a few at a time, each bounded by the broker
//! timeout. Partition counts are cached briefly: Publish checks them on every call.

use super::{Error, KafkaSettings};
use crate::domain::{TopicName, TopicPartition};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, KafkaResult, RDKafkaErrorCode},
    metadata::Metadata,
    Offset, TopicPartitionList,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::Semaphore;

/// How long a partition count is trusted. A partition added to a topic is seen at
/// the latest this much later (sooner when a record names it explicitly).
const PARTITION_COUNT_TTL: Duration = Duration::from_secs(30);

/// Blocking lookups that may run at once; more wait their turn.
const CONCURRENT_LOOKUPS: usize = 8;

/// Topics whose partition count is remembered; past this, expired entries go.
const CACHE_CAPACITY: usize = 10_000;

/// Pause between metadata attempts while a topic is being created.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

type FetchMetadata = dyn Fn(&str, Duration) -> KafkaResult<Metadata> + Send + Sync;

/// The topic and offset lookups of one metadata client, shared by the consumer
/// manager and admin requests.
pub struct Lookups {
    /// Partition counts.
    pub topics: Arc<TopicLookup>,
    /// Watermarks and timestamps.
    pub offsets: OffsetLookup,
}

impl Lookups {
    /// Creates the metadata client. It connects in the background.
    pub fn new(settings: &KafkaSettings) -> Result<Lookups, Error> {
        let client: BaseConsumer = settings
            .metadata()
            .create()
            .map_err(|e| Error::client("metadata client", e))?;
        let client = Arc::new(client);
        let timeout = settings.kafka.broker_timeout;
        Ok(Lookups {
            topics: Arc::new(TopicLookup::through_consumer(client.clone(), timeout)),
            offsets: OffsetLookup::new(client, timeout),
        })
    }
}

/// Answers "does this topic exist, and how many partitions has it?".
pub struct TopicLookup {
    fetch: Arc<FetchMetadata>,
    timeout: Duration,
    cache: Mutex<HashMap<TopicName, (i32, Instant)>>,
    permits: Arc<Semaphore>,
}

impl TopicLookup {
    /// Lookups through a consumer, which never creates topics.
    pub fn through_consumer(consumer: Arc<BaseConsumer>, timeout: Duration) -> TopicLookup {
        TopicLookup::new(
            Arc::new(move |topic, t| consumer.fetch_metadata(Some(topic), t)),
            timeout,
        )
    }

    /// Lookups through `fetch`.
    pub(super) fn new(fetch: Arc<FetchMetadata>, timeout: Duration) -> TopicLookup {
        TopicLookup {
            fetch,
            timeout,
            cache: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(CONCURRENT_LOOKUPS)),
        }
    }

    /// The number of partitions of `topic`, or [`Error::TopicNotFound`].
    pub async fn partition_count(&self, topic: &TopicName) -> Result<i32, Error> {
        if let Some(&(count, at)) = self.cache.lock().expect("cache lock").get(topic) {
            if at.elapsed() < PARTITION_COUNT_TTL {
                return Ok(count);
            }
        }
        self.refresh(topic).await
    }

    /// Fails with [`Error::PartitionNotFound`] unless `partition` exists in `topic`.
    /// A partition beyond the cached count triggers one fresh lookup first.
    pub async fn check_partition(&self, topic: &TopicName, partition: i32) -> Result<(), Error> {
        let mut count = self.partition_count(topic).await?;
        if partition >= count {
            count = self.refresh(topic).await?;
        }
        if partition >= count {
            return Err(Error::PartitionNotFound {
                topic: topic.to_string(),
                partition,
                count,
            });
        }
        Ok(())
    }

    async fn refresh(&self, topic: &TopicName) -> Result<i32, Error> {
        let fetch = self.fetch.clone();
        let name = topic.to_string();
        let timeout = self.timeout;
        let count = run_blocking(&self.permits, move || {
            partition_count(&*fetch, &name, timeout)
        })
        .await?;
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, (_, at)| at.elapsed() < PARTITION_COUNT_TTL);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(topic.clone(), (count, Instant::now()));
        Ok(count)
    }
}

/// Partition count of one topic, retrying while the broker is still creating it.
fn partition_count(fetch: &FetchMetadata, topic: &str, timeout: Duration) -> Result<i32, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let metadata = fetch(topic, remaining.max(Duration::from_millis(1)))
            .map_err(|e| unavailable(&e, "fetching topic metadata", timeout))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found.map(|t| (t.error(), t.partitions().len())) {
            Some((None, n)) if n > 0 => return Ok(n as i32),
            Some((Some(code), _)) => match RDKafkaErrorCode::from(code) {
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                    return Err(Error::TopicNotFound {
                        topic: topic.to_string(),
                    })
                }
                // Being created (auto-creation, or just created): try again.
                RDKafkaErrorCode::LeaderNotAvailable => {}
                other => {
                    return Err(Error::from_kafka(
                        &KafkaError::MetadataFetch(other),
                        Some(topic),
                    ))
                }
            },
            // Listed without partitions, or not listed yet: being created.
            _ => {}
        }
        if Instant::now() + RETRY_PAUSE >= deadline {
            return Err(Error::Unavailable(format!(
                "topic {topic:?} has no partition leaders yet after {timeout:?}"
            )));
        }
        std::thread::sleep(RETRY_PAUSE);
    }
}

/// Offset lookups for partition subscriptions: where a partition begins and ends,
/// and which offset a timestamp falls on.
#[derive(Clone)]
pub struct OffsetLookup {
    consumer: Arc<BaseConsumer>,
    timeout: Duration,
    permits: Arc<Semaphore>,
}

impl OffsetLookup {
    /// Lookups through `consumer`, a client without a group.
    pub fn new(consumer: Arc<BaseConsumer>, timeout: Duration) -> OffsetLookup {
        OffsetLookup {
            consumer,
            timeout,
            permits: Arc::new(Semaphore::new(CONCURRENT_LOOKUPS)),
        }
    }

    /// The oldest kept offset and the next offset to be written, per partition.
    pub async fn watermarks(
        &self,
        partitions: Vec<TopicPartition>,
    ) -> Result<Vec<(i64, i64)>, Error> {
        let consumer = self.consumer.clone();
        let timeout = self.timeout;
        run_blocking(&self.permits, move || {
            partitions
                .iter()
                .map(|TopicPartition { topic, partition }| {
                    consumer
                        .fetch_watermarks(topic.as_str(), *partition, timeout)
                        .map_err(|e| unavailable(&e, "fetching partition offsets", timeout))
                })
                .collect()
        })
        .await
    }

    /// The end of each partition, where a reader starting at "latest" begins (the
    /// last stable offset, under librdkafka's default `read_committed`): one
    /// ListOffsets request per leader for all of them, where [`Self::watermarks`]
    /// takes two round trips per partition.
    pub async fn ends(&self, partitions: Vec<TopicPartition>) -> Result<Vec<i64>, Error> {
        self.list_offsets(partitions, Offset::End, "looking up partition ends")
            .await?
            .into_iter()
            .map(|end| {
                end.ok_or_else(|| {
                    Error::Unavailable("the broker named no end offset for a partition".into())
                })
            })
            .collect()
    }

    /// For each partition, the first offset whose timestamp is at or after
    /// `timestamp_ms`; `None` where no record is that recent.
    pub async fn offsets_for_time(
        &self,
        partitions: Vec<TopicPartition>,
        timestamp_ms: i64,
    ) -> Result<Vec<Option<i64>>, Error> {
        self.list_offsets(
            partitions,
            Offset::Offset(timestamp_ms),
            "looking up offsets by time",
        )
        .await
    }

    /// ListOffsets for every partition with the same `query`: a timestamp, or
    /// [`Offset::End`] for the protocol's "latest".
    async fn list_offsets(
        &self,
        partitions: Vec<TopicPartition>,
        query: Offset,
        what: &'static str,
    ) -> Result<Vec<Option<i64>>, Error> {
        let consumer = self.consumer.clone();
        let timeout = self.timeout;
        run_blocking(&self.permits, move || {
            let mut list = TopicPartitionList::with_capacity(partitions.len());
            for TopicPartition { topic, partition } in &partitions {
                list.add_partition_offset(topic.as_str(), *partition, query)
                    .map_err(|e| Error::Other(e.to_string()))?;
            }
            let answer = consumer
                .offsets_for_times(list, timeout)
                .map_err(|e| unavailable(&e, what, timeout))?;
            // By key: a search of the answer per partition is quadratic, some 10^8
            // comparisons at 10,000 partitions.
            let elements = answer.elements();
            let found: HashMap<(&str, i32), Offset> = elements
                .iter()
                .map(|e| ((e.topic(), e.partition()), e.offset()))
                .collect();
            Ok(partitions
                .iter()
                .map(|TopicPartition { topic, partition }| {
                    match found.get(&(topic.as_str(), *partition)) {
                        Some(Offset::Offset(offset)) => Some(*offset),
                        _ => None,
                    }
                })
                .collect())
        })
        .await
    }
}

/// A timed-out lookup reads better as "did not answer within X" than librdkafka's
/// "Local: Timed out"; other errors keep their own words.
fn unavailable(err: &KafkaError, what: &str, timeout: Duration) -> Error {
    match Error::from_kafka(err, None) {
        Error::Unavailable(_) => Error::Unavailable(format!(
            "the broker did not answer within {timeout:?} while {what} ({err}); check --brokers and that Kafka is up"
        )),
        other => other,
    }
}

/// Runs a blocking lookup on the blocking pool. The permit travels with the
/// closure: a caller that gives up (deadline, client gone) does not free its place
/// while the lookup still occupies a thread, so at most `CONCURRENT_LOOKUPS` run.
async fn run_blocking<T: Send + 'static>(
    permits: &Arc<Semaphore>,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Error::Canceled)?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f()
    })
    .await
    .unwrap_or_else(|e| Err(Error::Other(format!("lookup task failed: {e}"))))
}
