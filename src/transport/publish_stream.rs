//! The PublishStream loop: read records from the client, hand each to the shared
//! producer, answer each as the broker acknowledges it.

use super::{convert, proto, status};
use crate::{
    domain::{prefix, OutgoingRecord, TopicName, ValidationError},
    kafka::{AckCollector, ProducerManager},
    Error,
};
use futures::FutureExt;
use std::{collections::HashMap, sync::Arc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

/// Limits of one PublishStream.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Records handed to the producer and not yet answered.
    pub max_in_flight: usize,
    /// Largest record, in bytes.
    pub max_message_bytes: usize,
}

type Answer = Result<proto::PublishStreamResponse, Status>;

/// Batches of answers waiting for the client to take them, at most. A batch holds
/// at most the records in flight, so a stream holds no more than four times
/// `max_in_flight` answers (two waiting, one being sent, one being made), and
/// most of them are a few bytes.
pub const ANSWER_BATCHES: usize = 2;

/// Requests taken in one turn at most, so answers and shutdown are still seen
/// promptly.
const READ_BURST: usize = 256;

/// Longest `correlation_id`, in bytes. The gateway keeps a record's id until the
/// record is answered, so without a limit a client could make it hold up to
/// `--max-request-bytes` per record in flight.
pub const MAX_CORRELATION_ID_BYTES: usize = 1024;

/// Records read between two looks at the shutdown token within a burst.
const SHUTDOWN_CHECK_EVERY: usize = 32;

/// How long a stream waits before offering a record to a full producer queue again.
const QUEUE_FULL_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// Runs one PublishStream until the client closes its side (then every record in
/// flight is answered and the stream ends OK), the client goes away, or the gateway
/// shuts down (records in flight are answered, then UNAVAILABLE).
///
/// The stream is read only while fewer than `max_in_flight` records await their
/// answer, and answers wait for the client to take them, so a stream never holds
/// more than `max_in_flight` records: a faster client is held back by HTTP/2 flow
/// control. Records are enqueued in the order they arrive, so records for one
/// partition keep the stream's order.
pub async fn run(
    mut requests: Streaming<proto::PublishStreamRequest>,
    answers: mpsc::Sender<Vec<Answer>>,
    producer: Arc<ProducerManager>,
    limits: StreamLimits,
    shutdown: CancellationToken,
) {
    // Records handed to the producer and not yet answered: their correlation ids
    // by tag; their acknowledgements come through `deliveries`.
    let mut in_flight: HashMap<u64, String> = HashMap::new();
    let deliveries = Arc::new(AckCollector::default());
    let mut default_topic: Option<Result<TopicName, Error>> = None;
    let mut index = 0usize;
    // Made once: a fresh wait per loop turn registers and drops a waiter for every
    // record, a cost seen in profiles at a few hundred thousand records/s.
    let stopping = shutdown.cancelled();
    let gone = answers.closed();
    tokio::pin!(stopping, gone);
    let ended = 'reading: loop {
        tokio::select! {
            biased;
            _ = &mut stopping => break Some(Status::from(Error::ShuttingDown)),
            // The response is gone (deadline, client cancel): stop reading.
            _ = &mut gone => return,
            // Every acknowledgement that came meanwhile goes out in this turn.
            ready = deliveries.ready(), if !in_flight.is_empty() => {
                if answer_all(ready, &mut in_flight, &answers).await.is_err() {
                    return;
                }
            }
            next = requests.message(), if in_flight.len() < limits.max_in_flight => {
                // Requests already received are taken in the same turn, up to the
                // in-flight bound: a turn of the select per record showed in profiles.
                let mut next = Some(next);
                let mut taken = 0;
                while let Some(item) = next.take() {
                    let request = match item {
                        Ok(Some(request)) => request,
                        Ok(None) => break 'reading None,
                        // A request that cannot be decoded (too large, malformed) ends
                        // the stream with its status, after the records in flight are
                        // answered; a cancelled client makes the sends fail, and we stop.
                        Err(status) => break 'reading Some(status::undecodable(status)),
                    };
                    let topic = default_topic.get_or_insert_with(|| topic_of(&request.topic)).clone();
                    let position = index;
                    index += 1;
                    let tag = position as u64;
                    let accepted = async {
                        if request.correlation_id.len() > MAX_CORRELATION_ID_BYTES {
                            return Err(Error::from(ValidationError::CorrelationIdTooLong {
                                index: position,
                                size: request.correlation_id.len(),
                                limit: MAX_CORRELATION_ID_BYTES,
                            }));
                        }
                        let topic = if request.topic.is_empty() { topic? } else { topic_of(&request.topic)? };
                        let record = request.record.ok_or_else(|| ValidationError::Missing {
                            field: "record".into(),
                            message: format!("request {position} has no record"),
                        })?;
                        let record = convert::record(position, record, limits.max_message_bytes)?;
                        enqueue_in_order(&producer, &topic, &record, &deliveries, tag, &shutdown).await
                    };
                    match accepted.await {
                        Ok(()) => {
                            in_flight.insert(tag, request.correlation_id);
                        }
                        Err(err) => {
                            let mut correlation_id = request.correlation_id;
                            // An overlong id comes back cut, not whole.
                            let kept = prefix(&correlation_id, MAX_CORRELATION_ID_BYTES).len();
                            correlation_id.truncate(kept);
                            let answer = proto::PublishStreamResponse {
                                correlation_id,
                                result: Some(failed(&err)),
                            };
                            if answers.send(vec![Ok(answer)]).await.is_err() {
                                return;
                            }
                        }
                    }
                    taken += 1;
                    if taken < READ_BURST
                        && in_flight.len() < limits.max_in_flight
                        // Reading stops at shutdown, also within a burst; looked at
                        // every few records, since the token's check takes a lock.
                        && (taken % SHUTDOWN_CHECK_EVERY != 0 || !shutdown.is_cancelled())
                    {
                        next = requests.message().now_or_never();
                    }
                }
            }
        }
    };
    while !in_flight.is_empty() {
        let ready = tokio::select! {
            ready = deliveries.ready() => ready,
            // The client left: nobody to answer.
            _ = &mut gone => return,
        };
        if answer_all(ready, &mut in_flight, &answers).await.is_err() {
            return;
        }
    }
    if let Some(status) = ended {
        let _ = answers.send(vec![Err(status)]).await;
    }
}

/// Sends the answers of acknowledged records, in the order they came, as one batch.
async fn answer_all(
    ready: Vec<(u64, crate::kafka::Outcome)>,
    in_flight: &mut HashMap<u64, String>,
    answers: &mpsc::Sender<Vec<Answer>>,
) -> Result<(), mpsc::error::SendError<Vec<Answer>>> {
    let batch = ready
        .into_iter()
        .map(|(tag, outcome)| {
            let correlation_id = in_flight.remove(&tag).unwrap_or_default();
            let result = match outcome {
                Ok(delivered) => {
                    proto::publish_stream_response::Result::Ack(convert::record_result(delivered))
                }
                Err(err) => failed(&err.into()),
            };
            Ok(proto::PublishStreamResponse {
                correlation_id,
                result: Some(result),
            })
        })
        .collect();
    answers.send(batch).await
}

/// Hands a record to the producer, waiting while its queue is full. Failing the
/// record instead would let the records after it overtake it if the client
/// retried, breaking the stream's order within a partition; waiting holds back this
/// stream (it is not read meanwhile) and no other.
async fn enqueue_in_order(
    producer: &ProducerManager,
    topic: &TopicName,
    record: &OutgoingRecord,
    deliveries: &Arc<AckCollector>,
    tag: u64,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    loop {
        match producer.enqueue_to(topic, record, deliveries, tag).await {
            Err(crate::kafka::Error::QueueFull(_)) if !shutdown.is_cancelled() => {
                tokio::time::sleep(QUEUE_FULL_PAUSE).await;
            }
            other => return other.map_err(Error::from),
        }
    }
}

fn topic_of(name: &str) -> Result<TopicName, Error> {
    Ok(TopicName::new(name)?)
}

fn failed(err: &Error) -> proto::publish_stream_response::Result {
    proto::publish_stream_response::Result::Error(status::publish_error(err))
}
