//! The demo broker behind `--embedded-broker`: librdkafka's in-process mock
//! cluster. It speaks enough of the Kafka protocol for a first look (produce,
//! fetch, headers, consumer groups) but it is not Kafka: it lives in memory, loses
//! everything on exit, and must never stand in for a real cluster.

use rdkafka::{mocking::MockCluster, producer::DefaultProducerContext};

/// A running mock cluster; it stops when dropped.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    /// Starts a one-broker mock cluster on a loopback port.
    pub fn start() -> Result<EmbeddedBroker, String> {
        let cluster =
            MockCluster::new(1).map_err(|e| format!("cannot start the embedded broker: {e}"))?;
        Ok(EmbeddedBroker { cluster })
    }

    /// Its bootstrap address.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}
