//! Turns a partition subscription into exact partitions and start offsets before any consumer exists, so a stream's start is fixed when Subscribe
//! returns and bad partitions or offsets fail the call, not the stream.

use crate::{
    domain::{PartitionStart, Position, TopicName, TopicPartition, MAX_PARTITIONS},
    kafka::{
        self,
        metadata::{OffsetLookup, TopicLookup},
    },
    Error,
};
use rdkafka::Offset;

/// Every partition of `names`, or [`Error::TooManyPartitions`] past
/// [`MAX_PARTITIONS`] in all.
pub(super) async fn every_partition(
    topics: &TopicLookup,
    names: &[TopicName],
) -> Result<Vec<TopicPartition>, Error> {
    let mut all = Vec::new();
    for topic in names {
        let count = topics.partition_count(topic).await?;
        all.extend((0..count).map(|p| TopicPartition::new(topic.clone(), p)));
        if all.len() > MAX_PARTITIONS {
            return Err(Error::TooManyPartitions {
                limit: MAX_PARTITIONS,
            });
        }
    }
    Ok(all)
}

/// Resolves what a partition subscription reads and where each partition starts.
pub(super) async fn resolve(
    topics: &TopicLookup,
    offsets: &OffsetLookup,
    names: &[TopicName],
    partitions: Option<Vec<i32>>,
    start: PartitionStart,
) -> Result<Vec<(TopicPartition, Offset)>, Error> {
    let chosen: Vec<TopicPartition> = match (&start, partitions) {
        (PartitionStart::Offsets(list), _) => list.iter().map(Position::topic_partition).collect(),
        (_, Some(subset)) => names
            .iter()
            .flat_map(|t| {
                subset
                    .iter()
                    .map(move |p| TopicPartition::new(t.clone(), *p))
            })
            .collect(),
        (_, None) => every_partition(topics, names).await?,
    };
    for TopicPartition { topic, partition } in &chosen {
        topics.check_partition(topic, *partition).await?;
    }
    let starts: Vec<Offset> = match start {
        PartitionStart::Earliest => vec![Offset::Beginning; chosen.len()],
        // The current end, fixed now: "latest" resolved later by the consumer would
        // skip records published between Subscribe returning and the first fetch.
        PartitionStart::Latest => offsets
            .ends(chosen.clone())
            .await?
            .into_iter()
            .map(Offset::Offset)
            .collect(),
        PartitionStart::Timestamp(ms) => {
            // Ends first: a record written between the two lookups is then read
            // rather than skipped.
            let ends = offsets.ends(chosen.clone()).await?;
            let found = offsets.offsets_for_time(chosen.clone(), ms).await?;
            found
                .into_iter()
                .zip(ends)
                .map(|(at, end)| Offset::Offset(at.unwrap_or(end)))
                .collect()
        }
        PartitionStart::Offsets(list) => {
            let marks = offsets.watermarks(chosen.clone()).await?;
            let mut starts = Vec::with_capacity(list.len());
            for (
                Position {
                    topic,
                    partition,
                    offset,
                },
                (low, high),
            ) in list.into_iter().zip(marks)
            {
                if offset < low || offset > high {
                    return Err(kafka::Error::OffsetOutOfRange {
                        topic: topic.to_string(),
                        partition,
                        offset,
                        low,
                        high,
                    }
                    .into());
                }
                starts.push(Offset::Offset(offset));
            }
            starts
        }
    };
    Ok(chosen.into_iter().zip(starts).collect())
}
