//! Compiles `proto/` with protox (a pure-Rust protobuf compiler, so no system
//! `protoc`) and generates tonic servers and clients. The encoded descriptor set is
//! kept too: server reflection serves it, so grpcurl works without proto files.

use prost::Message as _;
use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "kafka_gateway/v1/record.proto",
    "kafka_gateway/v1/error.proto",
    "kafka_gateway/v1/publisher.proto",
    "kafka_gateway/v1/subscriber.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("kafka_gateway_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        // `bytes::Bytes` lets a decoded request share the network buffer instead of
        // copying every key and value into a fresh Vec.
        .bytes(".")
        // A request that does not decode is the client's fault, not INTERNAL.
        .codec_path("crate::transport::codec::GatewayCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
