//! Records and requests as tests write them: short, with only what a test is
//! about set.

use kafka_gateway::transport::proto;

/// A record with a value and optional key.
pub fn record(key: Option<&str>, value: &str) -> proto::Record {
    proto::Record {
        key: key.map(|k| k.as_bytes().to_vec().into()),
        value: Some(value.as_bytes().to_vec().into()),
        ..Default::default()
    }
}

/// `n` records whose values are "0", "1", ...
pub fn numbered(n: usize) -> Vec<proto::Record> {
    (0..n).map(|i| record(None, &i.to_string())).collect()
}

/// A record for an explicit partition.
pub fn record_at(partition: i32, value: &str) -> proto::Record {
    proto::Record {
        partition: Some(partition),
        ..record(None, value)
    }
}

/// UTF-8 text of a record's value.
pub fn value_of(record: &proto::ConsumedRecord) -> String {
    String::from_utf8(record.value.clone().unwrap_or_default().to_vec()).unwrap()
}

/// Subscribe request for a topic without a group.
pub fn partitions_request(topic: &str, start: proto::StartPosition) -> proto::SubscribeRequest {
    proto::SubscribeRequest {
        topics: vec![topic.into()],
        start: start as i32,
        ..Default::default()
    }
}

/// Subscribe request for a topic in a group.
pub fn group_request(
    topic: &str,
    group: &str,
    start: proto::StartPosition,
) -> proto::SubscribeRequest {
    proto::SubscribeRequest {
        topics: vec![topic.into()],
        group_id: group.into(),
        start: start as i32,
        ..Default::default()
    }
}
