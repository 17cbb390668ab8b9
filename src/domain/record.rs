use super::{TopicName, ValidationError};
use bytes::Bytes;

/// A record header; keys may repeat within a record, and a value may be null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Header value; `None` is Kafka's null.
    pub value: Option<Bytes>,
}

/// A record to publish, checked against the size limit.
#[derive(Debug, Clone)]
pub struct OutgoingRecord {
    /// Key; `None` is a null key (random partition unless one is given).
    pub key: Option<Bytes>,
    /// Value; `None` is a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<Header>,
    /// Explicit partition, or `None` for the partitioner's choice.
    pub partition: Option<i32>,
    /// Create time in milliseconds since the epoch, or `None` for "now".
    pub timestamp_ms: Option<i64>,
}

impl OutgoingRecord {
    /// Bytes the record occupies as Kafka counts them, near enough: key, value and
    /// header names and values.
    pub fn size(&self) -> usize {
        payload_size(&self.key, &self.value, &self.headers)
    }

    /// Checks the record at position `index` of a request.
    pub fn validate(&self, index: usize, max_bytes: usize) -> Result<(), ValidationError> {
        if self.key.is_none() && self.value.is_none() {
            return Err(ValidationError::EmptyRecord { index });
        }
        if let Some(partition) = self.partition.filter(|p| *p < 0) {
            return Err(ValidationError::NegativePartition {
                field: format!("records[{index}].partition"),
                partition,
            });
        }
        let size = self.size();
        if size > max_bytes {
            return Err(ValidationError::RecordTooLarge {
                index,
                size,
                limit: max_bytes,
            });
        }
        Ok(())
    }
}

/// Bytes of a record's key, value and header names and values.
fn payload_size(key: &Option<Bytes>, value: &Option<Bytes>, headers: &[Header]) -> usize {
    let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
    len(key)
        + len(value)
        + headers
            .iter()
            .map(|h| h.key.len() + len(&h.value))
            .sum::<usize>()
}

/// A record's timestamp as Kafka reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordTimestamp {
    /// The record has none.
    NotAvailable,
    /// Set by the producer (milliseconds since the epoch).
    CreateTime(i64),
    /// Set by the broker when it appended the record.
    LogAppendTime(i64),
}

impl RecordTimestamp {
    /// Milliseconds since the epoch, if there is a timestamp.
    pub fn millis(self) -> Option<i64> {
        match self {
            RecordTimestamp::NotAvailable => None,
            RecordTimestamp::CreateTime(ms) | RecordTimestamp::LogAppendTime(ms) => Some(ms),
        }
    }
}

/// Where the broker stored a published record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Partition written to.
    pub partition: i32,
    /// Offset assigned.
    pub offset: i64,
    /// Timestamp stored with the record.
    pub timestamp: RecordTimestamp,
}

/// A record read from Kafka.
#[derive(Debug, Clone)]
pub struct ConsumedRecord {
    /// Topic it came from.
    pub topic: TopicName,
    /// Partition it came from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Key; `None` is null.
    pub key: Option<Bytes>,
    /// Value; `None` is null.
    pub value: Option<Bytes>,
    /// Headers in the producer's order.
    pub headers: Vec<Header>,
    /// Its timestamp.
    pub timestamp: RecordTimestamp,
}

impl ConsumedRecord {
    /// Bytes of its key, value and header names and values, as for
    /// [`OutgoingRecord::size`].
    pub fn size(&self) -> usize {
        payload_size(&self.key, &self.value, &self.headers)
    }
}
