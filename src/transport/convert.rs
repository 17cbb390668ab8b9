//! Conversions between the generated API types and the domain. Anything a client
//! can get wrong becomes a [`ValidationError`] here, before Kafka is involved.

use super::proto;
use crate::domain::{
    AckMode, ConsumedRecord, GroupId, GroupStart, Header, OutgoingRecord, PartitionStart,
    Placement, Position, RecordTimestamp, SubscriptionEvent, SubscriptionSpec, TopicName,
    TopicPartition, ValidationError, MAX_PARTITIONS, MAX_TOPICS,
};

/// Most records one Publish may carry: the records of one call go to the shared
/// producer together, and one call must not fill its queue for everyone.
pub const MAX_PUBLISH_RECORDS: usize = 10_000;

/// Most headers one record may carry.
pub const MAX_HEADERS: usize = 1_000;

/// Most records one acknowledgement may name (as many as may await one).
const MAX_ACK_RECORDS: usize = MAX_UNACKED as usize;

/// A validated Publish: the topic and its records.
pub fn publish_request(
    request: proto::PublishRequest,
    max_message_bytes: usize,
) -> Result<(TopicName, Vec<OutgoingRecord>), ValidationError> {
    let topic = TopicName::new(&request.topic)?;
    if request.records.is_empty() {
        return Err(ValidationError::NoRecords);
    }
    ValidationError::check_count("records", request.records.len(), MAX_PUBLISH_RECORDS)?;
    let records = request
        .records
        .into_iter()
        .enumerate()
        .map(|(index, r)| record(index, r, max_message_bytes))
        .collect::<Result<Vec<_>, ValidationError>>()?;
    Ok((topic, records))
}

/// One validated record; `index` names it in error messages.
pub fn record(
    index: usize,
    r: proto::Record,
    max_message_bytes: usize,
) -> Result<OutgoingRecord, ValidationError> {
    ValidationError::check_count(
        &format!("records[{index}].headers"),
        r.headers.len(),
        MAX_HEADERS,
    )?;
    let record = OutgoingRecord {
        key: r.key,
        value: r.value,
        headers: r.headers.into_iter().map(header).collect(),
        partition: r.partition,
        timestamp_ms: r
            .timestamp
            .map(|t| millis(&t, || format!("records[{index}].timestamp")))
            .transpose()?,
    };
    record.validate(index, max_message_bytes)?;
    Ok(record)
}

/// Where one published record was written.
pub fn record_result(d: Placement) -> proto::RecordResult {
    proto::RecordResult {
        partition: d.partition,
        offset: d.offset,
        timestamp: timestamp(d.timestamp),
    }
}

/// The response to a successful Publish.
pub fn publish_response(delivered: Vec<Placement>) -> proto::PublishResponse {
    proto::PublishResponse {
        results: delivered.into_iter().map(record_result).collect(),
    }
}

/// A validated Subscribe.
pub fn subscription(request: proto::SubscribeRequest) -> Result<SubscriptionSpec, ValidationError> {
    // Counted before anything is made of them.
    ValidationError::check_count("topics", request.topics.len(), MAX_TOPICS)?;
    ValidationError::check_count("start_offsets", request.start_offsets.len(), MAX_PARTITIONS)?;
    let topics = request
        .topics
        .iter()
        .enumerate()
        .map(|(i, t)| TopicName::new(t).map_err(|e| e.in_field(|| format!("topics[{i}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    let start = proto::StartPosition::try_from(request.start).map_err(|_| {
        ValidationError::invalid_field(
            "start",
            format!(
                "start {} is not a StartPosition this gateway knows",
                request.start
            ),
        )
    })?;
    use proto::StartPosition as S;
    let misplaced = |field: &str, needs: &str| {
        Err(ValidationError::invalid_field(
            field,
            format!("{field} is only used with {needs}"),
        ))
    };
    if !request.start_offsets.is_empty() && start != S::Offset {
        return misplaced("start_offsets", "start START_POSITION_OFFSET");
    }
    if request.start_timestamp.is_some() && start != S::Timestamp {
        return misplaced("start_timestamp", "start START_POSITION_TIMESTAMP");
    }
    if !request.group_id.is_empty() {
        if !request.partitions.is_empty() {
            return misplaced(
                "partitions",
                "an empty group_id: a consumer group assigns partitions itself",
            );
        }
        let start = match start {
            S::Unspecified | S::Latest => GroupStart::Latest,
            S::Earliest => GroupStart::Earliest,
            S::Offset | S::Timestamp => {
                return Err(ValidationError::invalid_field("start", format!(
                    "start {} needs an empty group_id: a group starts where it committed, or at LATEST or EARLIEST",
                    start.as_str_name()
                )))
            }
        };
        let acks = match proto::AckMode::try_from(request.ack_mode) {
            Ok(proto::AckMode::Unspecified | proto::AckMode::Auto) => AckMode::Auto,
            Ok(proto::AckMode::Client) => AckMode::Client {
                max_unacked: max_unacked(request.max_unacked)?,
            },
            Err(_) => {
                return Err(ValidationError::invalid_field(
                    "ack_mode",
                    format!(
                        "ack_mode {} is not an AckMode this gateway knows",
                        request.ack_mode
                    ),
                ))
            }
        };
        return SubscriptionSpec::group(&request.group_id, topics, start, acks);
    }
    if request.ack_mode == proto::AckMode::Client as i32 {
        return misplaced(
            "ack_mode ACK_MODE_CLIENT",
            "a group_id: only a consumer group commits offsets",
        );
    }
    let start = match start {
        S::Unspecified | S::Latest => PartitionStart::Latest,
        S::Earliest => PartitionStart::Earliest,
        S::Timestamp => {
            let Some(t) = request.start_timestamp else {
                return Err(ValidationError::invalid_field(
                    "start_timestamp",
                    "START_POSITION_TIMESTAMP needs start_timestamp",
                ));
            };
            PartitionStart::Timestamp(millis(&t, || "start_timestamp".into())?)
        }
        S::Offset => {
            let offsets = request
                .start_offsets
                .into_iter()
                .enumerate()
                .map(|(i, o)| {
                    let topic = match (o.topic.as_str(), topics.as_slice()) {
                        ("", [only]) => only.clone(),
                        ("", _) => {
                            return Err(ValidationError::invalid_field("start_offsets.topic", 
                                "start_offsets.topic may be empty only when topics names exactly one topic",
                            ))
                        }
                        (name, _) => TopicName::new(name)
                            .map_err(|e| e.in_field(|| format!("start_offsets[{i}].topic")))?,
                    };
                    Ok(Position::new(topic, o.partition, o.offset))
                })
                .collect::<Result<Vec<_>, _>>()?;
            PartitionStart::Offsets(offsets)
        }
    };
    SubscriptionSpec::partitions(topics, request.partitions, start)
}

/// One event of a Subscribe stream.
pub fn subscription_event(event: SubscriptionEvent) -> proto::SubscribeResponse {
    use proto::subscribe_response::Event;
    let partitions = |list: Vec<TopicPartition>| {
        list.into_iter()
            .map(
                |TopicPartition { topic, partition }| proto::TopicPartition {
                    topic: topic.to_string(),
                    partition,
                },
            )
            .collect()
    };
    let event = match event {
        SubscriptionEvent::Record(record) => Event::Record(consumed_record(record)),
        SubscriptionEvent::Started(subscription_id) => {
            Event::Started(proto::SubscriptionStarted { subscription_id })
        }
        SubscriptionEvent::Assigned(list) => Event::Assigned(proto::PartitionsAssigned {
            partitions: partitions(list),
        }),
        SubscriptionEvent::Revoked(list) => Event::Revoked(proto::PartitionsRevoked {
            partitions: partitions(list),
        }),
    };
    proto::SubscribeResponse { event: Some(event) }
}

/// A validated ResetOffsets: group, topic and where to.
pub fn reset_offsets_request(
    request: proto::ResetOffsetsRequest,
) -> Result<(GroupId, TopicName, PartitionStart), ValidationError> {
    let group = GroupId::new(&request.group_id)?;
    // The same positions as a Subscribe without a group, checked the same way.
    let as_subscribe = proto::SubscribeRequest {
        topics: vec![request.topic],
        start: request.position,
        start_offsets: request.offsets,
        start_timestamp: request.timestamp,
        ..Default::default()
    };
    match subscription(as_subscribe)? {
        SubscriptionSpec::Partitions {
            mut topics, start, ..
        } => Ok((group, topics.remove(0), start)),
        SubscriptionSpec::Group { .. } => unreachable!("no group_id was given"),
    }
}

/// Offsets as PartitionOffset messages.
pub fn partition_offsets(offsets: Vec<Position>) -> Vec<proto::PartitionOffset> {
    offsets
        .into_iter()
        .map(
            |Position {
                 topic,
                 partition,
                 offset,
             }| proto::PartitionOffset {
                topic: topic.to_string(),
                partition,
                offset,
            },
        )
        .collect()
}

/// The records an AckRequest names.
pub fn ack_request(request: proto::AckRequest) -> Result<(String, Vec<Position>), ValidationError> {
    if request.subscription_id.is_empty() {
        return Err(ValidationError::invalid_field(
            "subscription_id",
            "subscription_id is empty: use the id from the stream's SubscriptionStarted event",
        ));
    }
    Ok((request.subscription_id, record_positions(request.records)?))
}

/// Records named in an acknowledgement.
pub fn record_positions(
    records: Vec<proto::RecordPosition>,
) -> Result<Vec<Position>, ValidationError> {
    if records.is_empty() {
        return Err(ValidationError::invalid_field(
            "records",
            "records is empty: name the records to acknowledge",
        ));
    }
    ValidationError::check_count("records", records.len(), MAX_ACK_RECORDS)?;
    records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            if r.partition < 0 {
                return Err(ValidationError::NegativePartition {
                    field: format!("records[{i}].partition"),
                    partition: r.partition,
                });
            }
            if r.offset < 0 {
                return Err(ValidationError::invalid_field(
                    &format!("records[{i}].offset"),
                    format!(
                        "records[{i}].offset {} is negative: offsets count from 0",
                        r.offset
                    ),
                ));
            }
            let topic = TopicName::new(&r.topic)
                .map_err(|e| e.in_field(|| format!("records[{i}].topic")))?;
            Ok(Position::new(topic, r.partition, r.offset))
        })
        .collect()
}

/// Most records one `records` event may carry.
const MAX_BATCH_RECORDS: i32 = 10_000;

/// `max_batch_records` of a request: `None` for one record per event.
pub fn max_batch_records(requested: i32) -> Result<Option<usize>, ValidationError> {
    match requested {
        0 | 1 => Ok(None),
        n if (2..=MAX_BATCH_RECORDS).contains(&n) => Ok(Some(n as usize)),
        n => Err(ValidationError::invalid_field("max_batch_records", format!(
            "max_batch_records {n} is out of range: give 2 to {MAX_BATCH_RECORDS}, or 0 for one record per event"
        ))),
    }
}

/// Events that were ready together, with their records joined into `records`
/// events; an error ends the list, after what came before it.
pub fn batched_events<E>(
    ready: Vec<Result<SubscriptionEvent, E>>,
) -> Vec<Result<proto::SubscribeResponse, E>> {
    use proto::subscribe_response::Event;
    let mut out = Vec::new();
    let mut records = Vec::new();
    let flush = |records: &mut Vec<proto::ConsumedRecord>, out: &mut Vec<Result<_, E>>| {
        if !records.is_empty() {
            out.push(Ok(proto::SubscribeResponse {
                event: Some(Event::Records(proto::RecordBatch {
                    records: std::mem::take(records),
                })),
            }));
        }
    };
    for item in ready {
        match item {
            Ok(SubscriptionEvent::Record(record)) => records.push(consumed_record(record)),
            Ok(other) => {
                flush(&mut records, &mut out);
                out.push(Ok(subscription_event(other)));
            }
            Err(err) => {
                flush(&mut records, &mut out);
                out.push(Err(err));
                return out;
            }
        }
    }
    flush(&mut records, &mut out);
    out
}

/// A Subscribe event as a Consume event.
pub fn consume_event(response: proto::SubscribeResponse) -> proto::ConsumeResponse {
    use proto::{consume_response::Event as C, subscribe_response::Event as S};
    proto::ConsumeResponse {
        event: response.event.map(|event| match event {
            S::Record(r) => C::Record(r),
            S::Started(s) => C::Started(s),
            S::Assigned(a) => C::Assigned(a),
            S::Revoked(r) => C::Revoked(r),
            S::Records(r) => C::Records(r),
        }),
    }
}

fn consumed_record(record: ConsumedRecord) -> proto::ConsumedRecord {
    proto::ConsumedRecord {
        topic: String::from(record.topic.as_str()),
        partition: record.partition,
        offset: record.offset,
        key: record.key,
        value: record.value,
        headers: record
            .headers
            .into_iter()
            .map(|h| proto::Header {
                key: h.key,
                value: h.value,
            })
            .collect(),
        timestamp: timestamp(record.timestamp),
    }
}

/// Most unacknowledged records a subscription may ask for. The gateway keeps the
/// offset of each until it is acknowledged, so the limit bounds that memory.
const MAX_UNACKED: i32 = 100_000;

/// `max_unacked` of a request; 0 means the default.
fn max_unacked(requested: i32) -> Result<usize, ValidationError> {
    const DEFAULT_MAX_UNACKED: usize = 1000;
    match requested {
        0 => Ok(DEFAULT_MAX_UNACKED),
        n if (1..=MAX_UNACKED).contains(&n) => Ok(n as usize),
        n => Err(ValidationError::invalid_field(
            "max_unacked",
            format!("max_unacked {n} is out of range: give 1 to {MAX_UNACKED}, or 0 for 1000"),
        )),
    }
}

fn header(h: proto::Header) -> Header {
    Header {
        key: h.key,
        value: h.value,
    }
}

fn timestamp(t: RecordTimestamp) -> Option<prost_types::Timestamp> {
    t.millis().map(|ms| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

/// Kafka keeps milliseconds since the epoch, not before it.
fn millis(t: &prost_types::Timestamp, field: impl Fn() -> String) -> Result<i64, ValidationError> {
    let bad = || ValidationError::BadTimestamp { field: field() };
    if !(0..1_000_000_000).contains(&t.nanos) || t.seconds < 0 {
        return Err(bad());
    }
    t.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(t.nanos / 1_000_000)))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribe(
        f: impl FnOnce(&mut proto::SubscribeRequest),
    ) -> Result<SubscriptionSpec, ValidationError> {
        let mut request = proto::SubscribeRequest {
            topics: vec!["t".into()],
            ..Default::default()
        };
        f(&mut request);
        subscription(request)
    }

    #[test]
    fn lists_in_a_request_are_bounded() {
        let one = || proto::Record {
            value: Some(bytes::Bytes::from_static(b"x")),
            ..Default::default()
        };
        let publish = |n: usize| proto::PublishRequest {
            topic: "t".into(),
            records: (0..n).map(|_| one()).collect(),
        };
        assert!(publish_request(publish(MAX_PUBLISH_RECORDS), 1000).is_ok());
        let err = publish_request(publish(MAX_PUBLISH_RECORDS + 1), 1000).unwrap_err();
        assert!(err.to_string().contains("at most 10000"), "{err}");

        let with_headers = |n: usize| proto::Record {
            headers: (0..n)
                .map(|i| proto::Header {
                    key: format!("h{i}"),
                    value: None,
                })
                .collect(),
            ..one()
        };
        assert!(record(0, with_headers(MAX_HEADERS), 1 << 20).is_ok());
        let err = record(0, with_headers(MAX_HEADERS + 1), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("records[0].headers"), "{err}");

        let positions = |n: usize| {
            (0..n)
                .map(|i| proto::RecordPosition {
                    topic: "t".into(),
                    partition: 0,
                    offset: i as i64,
                })
                .collect()
        };
        assert!(record_positions(positions(MAX_ACK_RECORDS)).is_ok());
        assert!(record_positions(positions(MAX_ACK_RECORDS + 1)).is_err());
    }

    #[test]
    fn a_reset_names_a_valid_group() {
        let reset = |group: String| proto::ResetOffsetsRequest {
            group_id: group,
            topic: "t".into(),
            ..Default::default()
        };
        assert!(reset_offsets_request(reset("g".into())).is_ok());
        for bad in [String::new(), " ".into(), "g".repeat(256)] {
            let err = reset_offsets_request(reset(bad)).unwrap_err().to_string();
            assert!(err.contains("1 to 255 characters"), "{err}");
        }
    }

    #[test]
    fn max_unacked_is_bounded() {
        assert_eq!(max_unacked(0).unwrap(), 1000);
        assert_eq!(max_unacked(1).unwrap(), 1);
        assert_eq!(max_unacked(MAX_UNACKED).unwrap(), 100_000);
        for bad in [-1, MAX_UNACKED + 1, i32::MAX] {
            let err = max_unacked(bad).unwrap_err().to_string();
            assert!(err.contains("out of range"), "{bad}: {err}");
        }
    }

    #[test]
    fn group_rejects_partition_fields() {
        assert!(subscribe(|r| {
            r.group_id = "g".into();
            r.partitions = vec![0];
        })
        .is_err());
        assert!(subscribe(|r| {
            r.group_id = "g".into();
            r.start = proto::StartPosition::Offset as i32;
        })
        .is_err());
        assert!(subscribe(|r| r.start = 42).is_err());
    }

    #[test]
    fn start_fields_need_their_position() {
        assert!(
            subscribe(|r| r.start_timestamp = Some(prost_types::Timestamp::default())).is_err()
        );
        assert!(subscribe(|r| r.start = proto::StartPosition::Timestamp as i32).is_err());
        assert!(subscribe(|r| r.start = proto::StartPosition::Offset as i32).is_err());
        let spec = subscribe(|r| {
            r.start = proto::StartPosition::Offset as i32;
            r.start_offsets = vec![proto::PartitionOffset {
                topic: String::new(),
                partition: 1,
                offset: 5,
            }];
        })
        .unwrap();
        let SubscriptionSpec::Partitions {
            start: PartitionStart::Offsets(offsets),
            ..
        } = spec
        else {
            panic!("not an offsets start: {spec:?}")
        };
        assert_eq!(offsets[0].partition, 1);
        assert_eq!(offsets[0].offset, 5);
    }

    #[test]
    fn timestamps_round_trip_in_millis() {
        let t = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_789,
        };
        let ms = millis(&t, String::new).unwrap();
        assert_eq!(ms, 1_700_000_000_123);
        assert_eq!(
            timestamp(RecordTimestamp::CreateTime(ms)).unwrap().nanos,
            123_000_000
        );
        assert!(millis(
            &prost_types::Timestamp {
                seconds: -1,
                nanos: 0
            },
            String::new
        )
        .is_err());
    }
}
