//! Logging set-up. `KAFKA_GATEWAY_LOG` (or `RUST_LOG`) takes tracing filter
//! directives, e.g. `info,kafka_gateway=debug`; librdkafka logs under `librdkafka`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; later calls (tests) keep the first one.
pub fn init() {
    let filter = std::env::var("KAFKA_GATEWAY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .try_init();
}
