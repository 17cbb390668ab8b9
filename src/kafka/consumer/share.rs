//! One client connection's share of the consumers: without it, one connection
//! could take every consumer the gateway runs (200 EARLIEST Subscribe streams on
//! one connection made 811 librdkafka threads), and `--max-subscriptions` would
//! refuse everyone else.

use crate::Error;
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

/// Subscriptions with a consumer of their own that one owner (a client
/// connection) holds now. Streams on shared feeds cost a cursor and do not count.
#[derive(Debug, Clone, Default)]
pub struct ConsumerShare {
    held: Arc<AtomicUsize>,
}

/// One subscription's place in a [`ConsumerShare`], given back when dropped.
#[derive(Debug)]
pub(super) struct ShareSlot(Arc<AtomicUsize>);

impl ConsumerShare {
    /// An empty share.
    pub fn new() -> ConsumerShare {
        ConsumerShare::default()
    }

    /// Subscriptions holding a place now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// A place, or [`Error::Overloaded`] when `limit` are held.
    pub(super) fn take(&self, limit: usize) -> Result<ShareSlot, Error> {
        let before = self.held.fetch_add(1, Ordering::AcqRel);
        let slot = ShareSlot(self.held.clone());
        if before >= limit {
            return Err(Error::Overloaded {
                message: format!(
                    "this connection already has {limit} Subscribe streams with a consumer of their own (--max-subscriptions-per-connection); end one, or open them from another connection"
                ),
                limit,
            });
        }
        Ok(slot)
    }
}

impl Drop for ShareSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
