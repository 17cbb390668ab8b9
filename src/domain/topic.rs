use super::{Excerpt, ValidationError};
use std::{fmt, sync::Arc};

/// Longest topic name Kafka accepts.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// A topic name that Kafka accepts: 1 to 249 characters of `[a-zA-Z0-9._-]`, not
/// `.` or `..`. Cheap to clone, since every consumed record carries one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// Checks `name` against Kafka's rules.
    pub fn new(name: &str) -> Result<TopicName, ValidationError> {
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > MAX_TOPIC_NAME_LEN {
            Some("it is longer than 249 characters")
        } else if name == "." || name == ".." {
            Some("\".\" and \"..\" are not allowed")
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            Some("use only ASCII letters, digits, '.', '_' and '-'")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(ValidationError::TopicName {
                field: "topic".into(),
                name: Excerpt(name).to_string(),
                reason,
            }),
            None => Ok(TopicName(name.into())),
        }
    }

    /// A name that came from Kafka itself (metadata, a consumed record), which is
    /// valid by construction.
    pub fn trusted(name: &str) -> TopicName {
        TopicName(name.into())
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_names() {
        for name in ["orders", "a.b_c-D9", &"x".repeat(249)] {
            TopicName::new(name).unwrap();
        }
    }

    #[test]
    fn rejects_what_kafka_rejects() {
        for name in [
            "",
            ".",
            "..",
            "has space",
            "slash/y",
            "ünï",
            &"x".repeat(250),
        ] {
            assert!(TopicName::new(name).is_err(), "{name:?} was accepted");
        }
    }
}
