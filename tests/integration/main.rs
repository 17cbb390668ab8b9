//! Every test that shares a process well with the others, in one binary: one link
//! instead of one per file. cargo-nextest runs each test in a process of its own
//! anyway. Apart stay `faults`, which kills gateway processes and restarts
//! brokers, and `teardown`, which counts the threads of its own process.

mod acks;
mod backpressure;
mod binary;
mod errors;
mod fanout;
mod groups;
mod publish_stream;
mod publish_subscribe;
mod raw_http2;
mod shutdown;
mod tls;
