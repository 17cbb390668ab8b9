//! Code generated from `proto/` by `build.rs`; nothing here is hand-written.

#![allow(missing_docs, clippy::all)]

tonic::include_proto!("kafka_gateway.v1");

/// Encoded descriptors of the API, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("kafka_gateway_descriptor");
