//! The one conversion between rdkafka's records and the domain's, both ways: the
//! producer's outgoing records, what the broker placed, and the records the
//! consumers read (subscription pumps and fan-out alike). Headers travel here,
//! so trace context will be injected and extracted here too.

use crate::domain::{
    ConsumedRecord, Header, OutgoingRecord, Placement, RecordTimestamp, TopicName,
};
use bytes::Bytes;
use rdkafka::{
    message::{BorrowedMessage, Header as KafkaHeader, Headers, Message, OwnedHeaders},
    producer::BaseRecord,
    util::IntoOpaque,
};

/// `record` as librdkafka takes it for `topic`, with `opaque` as its delivery
/// report's target. Key, value and headers are borrowed, not copied.
pub fn outgoing<'a, T: IntoOpaque>(
    topic: &'a TopicName,
    record: &'a OutgoingRecord,
    opaque: T,
) -> BaseRecord<'a, [u8], [u8], T> {
    let mut base = BaseRecord::with_opaque_to(topic.as_str(), opaque);
    if let Some(key) = &record.key {
        base = base.key(key.as_ref());
    }
    if let Some(value) = &record.value {
        base = base.payload(value.as_ref());
    }
    if let Some(partition) = record.partition {
        base = base.partition(partition);
    }
    if let Some(ms) = record.timestamp_ms {
        base = base.timestamp(ms);
    }
    if !record.headers.is_empty() {
        let headers = record.headers.iter().fold(
            OwnedHeaders::new_with_capacity(record.headers.len()),
            |headers, h| {
                headers.insert(KafkaHeader {
                    key: &h.key,
                    value: h.value.as_deref(),
                })
            },
        );
        base = base.headers(headers);
    }
    base
}

/// Where the broker wrote a record, from its delivery report.
pub fn placement(message: &impl Message) -> Placement {
    Placement {
        partition: message.partition(),
        offset: message.offset(),
        timestamp: timestamp(message.timestamp()),
    }
}

/// Copies a consumed message out of librdkafka's buffers; `topic` is the
/// caller's name for its topic, which saves a lookup and an allocation.
pub fn consumed(message: &BorrowedMessage<'_>, topic: TopicName) -> ConsumedRecord {
    let headers = message.headers().map_or_else(Vec::new, |headers| {
        headers
            .iter()
            .map(|h| Header {
                key: h.key.to_string(),
                value: h.value.map(Bytes::copy_from_slice),
            })
            .collect()
    });
    ConsumedRecord {
        topic,
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(Bytes::copy_from_slice),
        value: message.payload().map(Bytes::copy_from_slice),
        headers,
        timestamp: timestamp(message.timestamp()),
    }
}

fn timestamp(timestamp: rdkafka::Timestamp) -> RecordTimestamp {
    match timestamp {
        rdkafka::Timestamp::NotAvailable => RecordTimestamp::NotAvailable,
        rdkafka::Timestamp::CreateTime(ms) => RecordTimestamp::CreateTime(ms),
        rdkafka::Timestamp::LogAppendTime(ms) => RecordTimestamp::LogAppendTime(ms),
    }
}
