/// A request the gateway will not send to Kafka. Each message names the offending
/// field and says how to fix it; every variant becomes INVALID_ARGUMENT, with the
/// field in the error's details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A topic name Kafka would reject.
    #[error("invalid topic name {name:?}: {reason}")]
    TopicName {
        /// Which field held it.
        field: String,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A Publish with no records.
    #[error("records is empty: a Publish needs at least one record")]
    NoRecords,
    /// A record with neither key nor value carries nothing.
    #[error("record {index} has neither key nor value: set at least one")]
    EmptyRecord {
        /// Position of the record in the request.
        index: usize,
    },
    /// A record over the configured size limit.
    #[error("record {index} is {size} bytes (key, value and headers), over the limit of {limit} bytes: split it or raise --max-message-bytes")]
    RecordTooLarge {
        /// Position of the record in the request.
        index: usize,
        /// Its size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A partition number below zero.
    #[error("{field} {partition} is negative: partitions are numbered from 0")]
    NegativePartition {
        /// Which field held it.
        field: String,
        /// The number given.
        partition: i32,
    },
    /// A timestamp that does not fit Kafka's milliseconds since the epoch.
    #[error("{field} is out of range: Kafka timestamps are milliseconds from 1970 on")]
    BadTimestamp {
        /// Which field held it.
        field: String,
    },
    /// A field whose value does not fit the request.
    #[error("{message}")]
    Field {
        /// Which field.
        field: String,
        /// What is wrong, and how to fix it.
        message: String,
    },
    /// A field that must be set is not.
    #[error("{message}")]
    Missing {
        /// Which field.
        field: String,
        /// What is missing, and how to fix it.
        message: String,
    },
    /// A PublishStream correlation id over its limit.
    #[error("request {index}: correlation_id is {size} bytes; at most {limit} are allowed (the answer carries its first {limit})")]
    CorrelationIdTooLong {
        /// Position of the request in the stream, from 0.
        index: usize,
        /// Its size in bytes.
        size: usize,
        /// The most allowed.
        limit: usize,
    },
    /// A list longer than the gateway takes in one request.
    #[error("{field} has {count} entries; at most {limit} are allowed in one request")]
    TooMany {
        /// Which list.
        field: String,
        /// How many it had.
        count: usize,
        /// The most allowed.
        limit: usize,
    },
}

impl ValidationError {
    /// A field whose value does not fit the request.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> ValidationError {
        ValidationError::Field {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The same error, found in `field` of the request (a topic name's field
    /// otherwise reads `topic`).
    pub fn in_field(self, field: impl FnOnce() -> String) -> ValidationError {
        match self {
            ValidationError::TopicName { name, reason, .. } => ValidationError::TopicName {
                field: field(),
                name,
                reason,
            },
            other => other,
        }
    }

    /// The request field at fault, as a path into the request (`records[3]`), for
    /// the field violation of the error's details.
    pub fn field(&self) -> String {
        match self {
            ValidationError::TopicName { field, .. } => field.clone(),
            ValidationError::NoRecords => "records".into(),
            ValidationError::EmptyRecord { index }
            | ValidationError::RecordTooLarge { index, .. } => {
                format!("records[{index}]")
            }
            ValidationError::CorrelationIdTooLong { .. } => "correlation_id".into(),
            ValidationError::NegativePartition { field, .. }
            | ValidationError::BadTimestamp { field }
            | ValidationError::Field { field, .. }
            | ValidationError::Missing { field, .. }
            | ValidationError::TooMany { field, .. } => field.clone(),
        }
    }

    /// Fails when `field` has more than `limit` entries.
    pub fn check_count(field: &str, count: usize, limit: usize) -> Result<(), ValidationError> {
        if count > limit {
            return Err(ValidationError::TooMany {
                field: field.to_string(),
                count,
                limit,
            });
        }
        Ok(())
    }
}

/// A client's text as error messages and logs show it: whole when short, else its
/// start and its length, so that a huge name is not copied into every answer.
#[derive(Debug, Clone, Copy)]
pub struct Excerpt<'a>(pub &'a str);

impl Excerpt<'_> {
    /// Texts up to this many bytes are shown whole.
    const WHOLE: usize = 256;
    /// How much of a longer text is shown.
    const START: usize = 200;
}

impl std::fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0;
        if text.len() <= Self::WHOLE {
            return f.write_str(text);
        }
        write!(f, "{}... ({} bytes)", prefix(text, Self::START), text.len())
    }
}

/// The longest start of `text` of at most `max` bytes that ends on a character
/// boundary.
pub fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::Excerpt;

    #[test]
    fn a_long_text_is_shown_by_its_start_and_length() {
        assert_eq!(Excerpt("short").to_string(), "short");
        let long = "é".repeat(1000);
        let shown = Excerpt(&long).to_string();
        assert!(shown.ends_with("... (2000 bytes)"), "{shown}");
        assert!(shown.len() < 220, "{}", shown.len());
    }
}
