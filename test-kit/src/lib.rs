//! What the gateway's tests and benchmarks share, written once: the broker they
//! run against, unique names, topics, the gateway in this process or as a child
//! process, and the gRPC clients that talk to it.
//!
//! Everything is re-exported at the root, so that a test needs one `use`.

pub mod broker;
pub mod client;
pub mod gateway;
pub mod names;
pub mod process;
pub mod records;
pub mod tls;
pub mod topics;

pub use broker::*;
pub use client::*;
pub use gateway::*;
pub use names::*;
pub use process::*;
pub use records::*;
pub use tls::*;
pub use topics::*;

use std::time::Duration;

/// Bound on any single wait in a test: long enough for a slow shared machine, so
/// it never decides a result, only stops a test that would hang.
pub const PATIENCE: Duration = Duration::from_secs(60);
