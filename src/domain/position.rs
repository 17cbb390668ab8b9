//! Where in Kafka: one partition of one topic, and one offset in it.

use super::TopicName;
use std::fmt;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: TopicName,
    /// The partition, 0 or more.
    pub partition: i32,
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: TopicName, partition: i32) -> TopicPartition {
        TopicPartition { topic, partition }
    }

    /// The position `offset` in this partition.
    pub fn at(self, offset: i64) -> Position {
        Position {
            topic: self.topic,
            partition: self.partition,
            offset,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// An offset in one partition: a record's, or where reading or committing goes on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// The topic.
    pub topic: TopicName,
    /// The partition, 0 or more.
    pub partition: i32,
    /// The offset, 0 or more.
    pub offset: i64,
}

impl Position {
    /// `offset` in `partition` of `topic`.
    pub fn new(topic: TopicName, partition: i32, offset: i64) -> Position {
        Position {
            topic,
            partition,
            offset,
        }
    }

    /// The partition this position is in.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }
}
