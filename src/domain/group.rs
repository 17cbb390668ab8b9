//! Consumer group ids, checked once when a request names one.

use super::{Excerpt, ValidationError};
use std::fmt;

/// Longest group id accepted (Kafka itself sets no limit; this bounds what a
/// request can make the gateway hold and log).
const MAX_GROUP_ID_LEN: usize = 255;

/// A consumer group id: 1 to 255 bytes, not blank.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(String);

impl GroupId {
    /// Checks `id`.
    pub fn new(id: &str) -> Result<GroupId, ValidationError> {
        if id.trim().is_empty() || id.len() > MAX_GROUP_ID_LEN {
            return Err(ValidationError::invalid_field(
                "group_id",
                format!(
                    "group_id {:?} must have 1 to 255 characters and not be blank",
                    Excerpt(id).to_string()
                ),
            ));
        }
        Ok(GroupId(id.to_string()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_or_overlong_ids_are_refused() {
        for id in ["", "  ", &"g".repeat(256)] {
            assert!(GroupId::new(id).is_err(), "{id:?} was accepted");
        }
        assert_eq!(GroupId::new("billing").unwrap().as_str(), "billing");
        GroupId::new(&"g".repeat(255)).unwrap();
    }
}
