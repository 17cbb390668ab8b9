//! The gateway under test: in this process, where a test can look inside it, or
//! as the real binary in a child process, whose signals, memory and CPU are its
//! own.

use crate::{
    broker::brokers,
    client::{connect, connect_when_listening, endpoint},
    names::free_port,
    process::{cpu_time, send_signal},
    PATIENCE,
};
use kafka_gateway::{
    cli::{Cli, Command},
    config::Config,
    kafka::{ConsumerManager, ProducerManager},
    server::Gateway,
    transport::proto::{
        publisher_service_client::PublisherServiceClient,
        subscriber_service_client::SubscriberServiceClient,
    },
};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;

/// Path of the `kafka-gateway` binary. Cargo tells it, at compile time, only to
/// the gateway package's own tests and benches, so this expands there.
#[macro_export]
macro_rules! gateway_binary {
    () => {
        env!("CARGO_BIN_EXE_kafka-gateway")
    };
}

/// Gateway configuration for tests: the test broker, a free port, and `extra` flags.
pub fn config(extra: &[&str]) -> Config {
    let brokers = brokers();
    let mut args = vec![
        "kafka-gateway",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--brokers",
        &brokers,
    ];
    args.extend_from_slice(extra);
    let Command::Serve(config) = Cli::load(args).expect("test config").command;
    config.validate().expect("valid test config");
    *config
}

/// A gateway running in this process.
pub struct TestGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its consumers, for tests that check none is left behind.
    pub consumers: Arc<ConsumerManager>,
    /// Its producer, for tests that look at what it holds.
    pub producer: Arc<ProducerManager>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestGateway {
    /// Starts a gateway on the test broker with extra flags.
    pub async fn start(extra: &[&str]) -> TestGateway {
        TestGateway::start_with(config(extra)).await
    }

    /// Starts a gateway with `config`.
    pub async fn start_with(config: Config) -> TestGateway {
        kafka_gateway::telemetry::init();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let brokers = config.kafka.brokers.clone().unwrap();
        let gateway = Gateway::new(&config, brokers).expect("gateway starts");
        let consumers = gateway.consumers();
        let producer = gateway.producer();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            gateway
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .expect("gateway serves");
        });
        TestGateway {
            addr,
            consumers,
            producer,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A connected channel.
    pub async fn channel(&self) -> Channel {
        connect(self.addr).await
    }

    /// A publisher client on a connection of its own.
    pub async fn publisher(&self) -> PublisherServiceClient<Channel> {
        PublisherServiceClient::new(self.channel().await)
    }

    /// A subscriber client on a connection of its own.
    pub async fn subscriber(&self) -> SubscriberServiceClient<Channel> {
        SubscriberServiceClient::new(self.channel().await)
    }

    /// Shuts down gracefully and waits until the gateway stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("gateway stops in time")
                .unwrap();
        }
    }
}

/// Waits (bounded) until the gateway destroyed every consumer.
pub async fn wait_until_no_consumers(gw: &TestGateway) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while gw.consumers.live_consumers() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "{} consumers still alive",
        gw.consumers.live_consumers()
    );
}

/// The real `kafka-gateway` binary, run as a child process on a free port; killed
/// when dropped.
pub struct GatewayProcess {
    /// The process.
    pub child: std::process::Child,
    /// The loopback port it listens on.
    pub port: u16,
}

impl GatewayProcess {
    /// Starts `binary serve` (see [`gateway_binary!`](crate::gateway_binary)) on
    /// the broker at `brokers` with `extra` flags.
    pub fn spawn(binary: &str, brokers: &str, extra: &[&str]) -> GatewayProcess {
        GatewayProcess::spawn_command(std::process::Command::new(binary), brokers, extra)
    }

    /// As [`spawn`](Self::spawn), from a command the caller prepared (its
    /// environment, say).
    pub fn spawn_command(
        mut command: std::process::Command,
        brokers: &str,
        extra: &[&str],
    ) -> GatewayProcess {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--listen", &listen, "--brokers", brokers];
        args.extend_from_slice(extra);
        let child = command
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start the binary");
        GatewayProcess { child, port }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A channel to it, once it listens.
    pub async fn channel(&self) -> Channel {
        connect_when_listening(endpoint(self.addr())).await
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the process.
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// CPU time (user + system) it used so far: what a benchmark charges to the
    /// gateway.
    pub fn cpu(&self) -> Duration {
        cpu_time(&self.child.id().to_string())
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
