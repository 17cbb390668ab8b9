use super::{GroupId, Position, TopicName, TopicPartition, ValidationError};

/// What a Subscribe stream reads, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionSpec {
    /// Join a consumer group; the group assigns partitions and keeps offsets.
    Group {
        /// Kafka `group.id`.
        group_id: GroupId,
        /// Topics to subscribe to, each once.
        topics: Vec<TopicName>,
        /// Where to start partitions the group has no committed offset for.
        start: GroupStart,
        /// Who decides what is committed.
        acks: AckMode,
    },
    /// Read partitions directly, with no group and no commits.
    Partitions {
        /// Topics to read, each once.
        topics: Vec<TopicName>,
        /// Partitions to read in every topic; `None` reads all of them. Always
        /// `None` with [`PartitionStart::Offsets`], whose entries name the partitions.
        partitions: Option<Vec<i32>>,
        /// Where to start.
        start: PartitionStart,
    },
}

/// Who decides which delivered records of a group subscription are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Records written to the stream count as processed.
    Auto,
    /// Only records the client acknowledged; at most `max_unacked` await an ack.
    Client {
        /// Delivered records that may await acknowledgement at once.
        max_unacked: usize,
    },
}

/// What a subscription stream carries.
#[derive(Debug, Clone)]
pub enum SubscriptionEvent {
    /// A record.
    Record(super::ConsumedRecord),
    /// First event of a client-acknowledged subscription: its id.
    Started(String),
    /// The group gave the stream these partitions.
    Assigned(Vec<TopicPartition>),
    /// The group took these partitions away.
    Revoked(Vec<TopicPartition>),
}

/// Start of a group subscription, used where the group has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStart {
    /// Records written from now on.
    Latest,
    /// The oldest records still kept.
    Earliest,
}

/// Start of a partition subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionStart {
    /// Records written from now on.
    Latest,
    /// The oldest records still kept.
    Earliest,
    /// The first record at or after this time (milliseconds since the epoch).
    Timestamp(i64),
    /// Exactly these partitions, each from its offset.
    Offsets(Vec<Position>),
}

impl SubscriptionSpec {
    /// A consumer group subscription.
    pub fn group(
        group_id: &str,
        topics: Vec<TopicName>,
        start: GroupStart,
        acks: AckMode,
    ) -> Result<SubscriptionSpec, ValidationError> {
        Ok(SubscriptionSpec::Group {
            group_id: GroupId::new(group_id)?,
            topics: unique_topics(topics)?,
            start,
            acks,
        })
    }

    /// A partition subscription without a group.
    pub fn partitions(
        topics: Vec<TopicName>,
        partitions: Vec<i32>,
        start: PartitionStart,
    ) -> Result<SubscriptionSpec, ValidationError> {
        let topics = unique_topics(topics)?;
        // Every topic is read in each listed partition.
        ValidationError::check_count(
            "topics x partitions",
            topics.len().saturating_mul(partitions.len()),
            MAX_PARTITIONS,
        )?;
        if let PartitionStart::Offsets(offsets) = &start {
            ValidationError::check_count("start_offsets", offsets.len(), MAX_PARTITIONS)?;
        }
        if let Some(&partition) = partitions.iter().find(|p| **p < 0) {
            return Err(ValidationError::NegativePartition {
                field: "partitions".into(),
                partition,
            });
        }
        let partitions = if partitions.is_empty() {
            None
        } else {
            let mut sorted = partitions.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != partitions.len() {
                return Err(ValidationError::invalid_field(
                    "partitions",
                    "partitions names a partition twice: list each once",
                ));
            }
            Some(partitions)
        };
        if let PartitionStart::Offsets(offsets) = &start {
            if partitions.is_some() {
                return Err(ValidationError::invalid_field("partitions", 
                    "partitions must be empty with START_POSITION_OFFSET: start_offsets names the partitions to read",
                ));
            }
            if offsets.is_empty() {
                return Err(ValidationError::invalid_field("start_offsets", 
                    "START_POSITION_OFFSET needs start_offsets: give a partition and offset for each partition to read",
                ));
            }
            let mut seen = std::collections::HashSet::new();
            let named: std::collections::HashSet<&TopicName> = topics.iter().collect();
            for Position {
                topic,
                partition,
                offset,
            } in offsets
            {
                if !named.contains(topic) {
                    return Err(ValidationError::invalid_field(
                        "start_offsets.topic",
                        format!("start_offsets names topic {topic:?}, which is not in topics"),
                    ));
                }
                if *partition < 0 {
                    return Err(ValidationError::NegativePartition {
                        field: "start_offsets.partition".into(),
                        partition: *partition,
                    });
                }
                if *offset < 0 {
                    return Err(ValidationError::invalid_field("start_offsets.offset", format!(
                        "start_offsets offset {offset} for {topic}/{partition} is negative: offsets start at 0"
                    )));
                }
                if !seen.insert((topic, partition)) {
                    return Err(ValidationError::invalid_field(
                        "start_offsets",
                        format!(
                        "start_offsets names {topic}/{partition} twice: list each partition once"
                    ),
                    ));
                }
            }
        }
        Ok(SubscriptionSpec::Partitions {
            topics,
            partitions,
            start,
        })
    }

    /// The topics the subscription reads.
    pub fn topics(&self) -> &[TopicName] {
        match self {
            SubscriptionSpec::Group { topics, .. }
            | SubscriptionSpec::Partitions { topics, .. } => topics,
        }
    }
}

/// Most topics one subscription may read: each is looked up when it starts.
pub const MAX_TOPICS: usize = 1000;

/// Most partitions one subscription without a group may read: each is looked up
/// when it starts, and each has a read-ahead of its own.
pub const MAX_PARTITIONS: usize = 10_000;

fn unique_topics(topics: Vec<TopicName>) -> Result<Vec<TopicName>, ValidationError> {
    if topics.is_empty() {
        return Err(ValidationError::invalid_field(
            "topics",
            "topics is empty: name at least one topic to read",
        ));
    }
    ValidationError::check_count("topics", topics.len(), MAX_TOPICS)?;
    let mut sorted = topics.clone();
    sorted.sort();
    if let Some(pair) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(ValidationError::invalid_field(
            "topics",
            format!(
                "topics names {:?} twice: list each topic once",
                pair[0].as_str()
            ),
        ));
    }
    Ok(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicName {
        TopicName::new(name).unwrap()
    }

    #[test]
    fn a_subscription_reads_at_most_max_partitions() {
        let topics = |n: usize| (0..n).map(|i| topic(&format!("t{i}"))).collect::<Vec<_>>();
        let ten: Vec<i32> = (0..10).collect();
        assert!(
            SubscriptionSpec::partitions(topics(1000), ten.clone(), PartitionStart::Latest).is_ok()
        );
        let mut eleven = ten;
        eleven.push(10);
        let err = SubscriptionSpec::partitions(topics(1000), eleven, PartitionStart::Latest)
            .unwrap_err()
            .to_string();
        assert!(err.contains("topics x partitions"), "{err}");
        let offsets = |n: usize| {
            PartitionStart::Offsets(
                (0..n as i32)
                    .map(|p| Position::new(topic("t0"), p, 0))
                    .collect(),
            )
        };
        assert!(SubscriptionSpec::partitions(topics(1), vec![], offsets(MAX_PARTITIONS)).is_ok());
        let err = SubscriptionSpec::partitions(topics(1), vec![], offsets(MAX_PARTITIONS + 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("start_offsets"), "{err}");
    }

    #[test]
    fn a_subscription_reads_at_most_max_topics() {
        let names = |n: usize| (0..n).map(|i| topic(&format!("t{i}"))).collect();
        assert!(unique_topics(names(MAX_TOPICS)).is_ok());
        let err = unique_topics(names(MAX_TOPICS + 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 1000"), "{err}");
    }

    #[test]
    fn offsets_must_name_known_topics_once() {
        let start = PartitionStart::Offsets(vec![Position::new(topic("b"), 0, 1)]);
        assert!(SubscriptionSpec::partitions(vec![topic("a")], vec![], start).is_err());
        let start = PartitionStart::Offsets(vec![
            Position::new(topic("a"), 0, 1),
            Position::new(topic("a"), 0, 2),
        ]);
        assert!(SubscriptionSpec::partitions(vec![topic("a")], vec![], start).is_err());
        let start = PartitionStart::Offsets(vec![Position::new(topic("a"), 0, -1)]);
        assert!(SubscriptionSpec::partitions(vec![topic("a")], vec![], start).is_err());
        let start = PartitionStart::Offsets(vec![Position::new(topic("a"), 0, 0)]);
        SubscriptionSpec::partitions(vec![topic("a")], vec![], start).unwrap();
    }

    #[test]
    fn topics_and_partitions_are_each_named_once() {
        assert!(SubscriptionSpec::partitions(vec![], vec![], PartitionStart::Latest).is_err());
        assert!(SubscriptionSpec::partitions(
            vec![topic("a"), topic("a")],
            vec![],
            PartitionStart::Latest
        )
        .is_err());
        assert!(
            SubscriptionSpec::partitions(vec![topic("a")], vec![1, 1], PartitionStart::Latest)
                .is_err()
        );
        assert!(
            SubscriptionSpec::partitions(vec![topic("a")], vec![-1], PartitionStart::Latest)
                .is_err()
        );
        assert!(
            SubscriptionSpec::group(" ", vec![topic("a")], GroupStart::Latest, AckMode::Auto)
                .is_err()
        );
    }
}
