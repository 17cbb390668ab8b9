//! The gRPC server's settings: where it listens and what one client may hold.

use super::TlsConfig;
use clap::Args;
use std::{net::SocketAddr, time::Duration};

/// HTTP/2 windows are at most 2^31 - 1 bytes (RFC 9113, 6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// A connection window starts at 65,535 bytes, and the gateway can only raise it.
const INITIAL_CONNECTION_WINDOW: u32 = 65_535;

/// Settings of the gRPC server and its client connections.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server")]
pub struct ServerConfig {
    /// Address the gRPC server listens on.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_LISTEN",
        default_value = "127.0.0.1:50051",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// Largest gRPC request accepted, in bytes (a whole Publish batch).
    #[arg(long, env = "KAFKA_GATEWAY_MAX_REQUEST_BYTES", default_value_t = 16 * 1024 * 1024, value_name = "BYTES")]
    pub max_request_bytes: usize,

    /// Calls one client connection may have open at once; a client opens more over
    /// more connections.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 1000,
        value_name = "COUNT"
    )]
    pub max_streams_per_connection: u32,

    /// Bytes a client may send on one call ahead of what the gateway has read: a
    /// PublishStream that is held back holds at most this much of its records.
    #[arg(long, env = "KAFKA_GATEWAY_HTTP2_STREAM_WINDOW", default_value_t = 256 * 1024, value_name = "BYTES")]
    pub http2_stream_window: u32,

    /// Bytes a client may send on one connection, over all its calls, ahead of what
    /// the gateway has read: the most one connection holds in the gateway.
    #[arg(long, env = "KAFKA_GATEWAY_HTTP2_CONNECTION_WINDOW", default_value_t = 16 * 1024 * 1024, value_name = "BYTES")]
    pub http2_connection_window: u32,

    /// How often an idle client connection is pinged, so that clients that vanished
    /// without closing lose their subscriptions.
    #[arg(long, env = "KAFKA_GATEWAY_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub keepalive_interval: Duration,

    /// How long a client may take to answer a ping before its connection, and every
    /// call on it, is closed.
    #[arg(long, env = "KAFKA_GATEWAY_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub keepalive_timeout: Duration,

    /// How long shutdown may take in all: in-flight publishes, commits, consumer
    /// closes and the producer flush share this time.
    #[arg(long, env = "KAFKA_GATEWAY_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub shutdown_grace: Duration,

    /// TLS on the listener.
    #[command(flatten)]
    pub tls: TlsConfig,
}

impl ServerConfig {
    /// Adds a line to `problems` for every setting that cannot be used.
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        if self.max_streams_per_connection == 0 {
            problems.push("--max-streams-per-connection must be at least 1".into());
        }
        if !(1024..=MAX_WINDOW).contains(&self.http2_stream_window) {
            problems.push(format!(
                "--http2-stream-window must be 1024 to {MAX_WINDOW} bytes, not {}",
                self.http2_stream_window
            ));
        }
        let smallest_connection_window = self.http2_stream_window.max(INITIAL_CONNECTION_WINDOW);
        if !(smallest_connection_window..=MAX_WINDOW).contains(&self.http2_connection_window) {
            problems.push(format!(
                "--http2-connection-window must be at least {INITIAL_CONNECTION_WINDOW} and at least --http2-stream-window ({}), and at most {MAX_WINDOW} bytes, not {}",
                self.http2_stream_window, self.http2_connection_window
            ));
        }
        super::check_positive(
            problems,
            [
                ("--keepalive-interval", self.keepalive_interval),
                ("--keepalive-timeout", self.keepalive_timeout),
            ],
        );
        self.tls.check(problems);
    }
}
