//! kafka-gateway: Apache Kafka behind a small, typed gRPC API.
//!
//! `docs/architecture.md` walks a Publish and a Subscribe through these modules.
//!
//! - [`cli`]: the binary's subcommands and how its command line is parsed.
//! - [`config`]: the settings in typed groups (flags, environment, TOML file).
//! - [`server`]: builds the managers and gRPC services, runs them, shuts down in order.
//! - [`transport`]: gRPC. Generated API, proto/domain conversion, thin services, the
//!   one error-to-status mapping, client deadlines.
//! - [`domain`]: validated topic names, records and subscription specs; no gRPC or
//!   Kafka types.
//! - [`kafka`]: the only code that touches rdkafka: the shared producer, the
//!   consumer manager, metadata and offset lookups.
//! - [`embedded_broker`]: the in-memory demo broker (not Kafka).
//! - [`shutdown`], [`telemetry`]: signals and logging.

pub mod cli;
pub mod config;
pub mod domain;
pub mod embedded_broker;
mod error;
pub mod kafka;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod transport;

pub use error::Error;
