//! Shared test harness: an in-process gateway on a free port, pointed at the real
//! Kafka-protocol broker that the test command started (`KAFKA_GATEWAY_TEST_BROKERS`).
#![allow(dead_code)]

use kafka_gateway::{
    cli::{Cli, Command},
    config::Config,
    kafka::{ConsumerManager, ProducerManager},
    server::Gateway,
    transport::proto::{
        self, publisher_service_client::PublisherServiceClient,
        subscriber_service_client::SubscriberServiceClient,
    },
};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    ClientConfig,
};
use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU32, Ordering},
    sync::Arc,
    time::Duration,
};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{transport::Channel, Streaming};

/// Bound on any single wait in a test: long enough for a slow shared machine, so
/// it never decides a result, only stops a test that would hang.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Bootstrap address of the test broker.
pub fn brokers() -> String {
    std::env::var("KAFKA_GATEWAY_TEST_BROKERS").expect(
        "KAFKA_GATEWAY_TEST_BROKERS is not set: run the tests with scripts/test, which starts a broker",
    )
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000
    )
}

/// Creates `name` with `partitions` partitions and waits until the broker serves it.
pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_on(&brokers(), name, partitions).await;
}

/// Creates `name` with `partitions` partitions on the broker at `address`.
pub async fn create_topic_on(address: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", address)
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(
            &[topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics");
    for result in results {
        result.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// A new topic with a unique name.
pub async fn topic(partitions: i32) -> String {
    let name = unique("t");
    create_topic(&name, partitions).await;
    name
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
    pub addr: SocketAddr,
    pub consumers: Arc<ConsumerManager>,
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
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect to gateway")
    }

    pub async fn publisher(&self) -> PublisherServiceClient<Channel> {
        PublisherServiceClient::new(self.channel().await)
    }

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

/// A record with a value and optional key.
pub fn record(key: Option<&str>, value: &str) -> proto::Record {
    proto::Record {
        key: key.map(|k| k.as_bytes().to_vec().into()),
        value: Some(value.as_bytes().to_vec().into()),
        ..Default::default()
    }
}

/// `n` records whose values are "0", "1", ...
pub fn numbered(n: usize) -> Vec<proto::Record> {
    (0..n).map(|i| record(None, &i.to_string())).collect()
}

/// A record for an explicit partition.
pub fn record_at(partition: i32, value: &str) -> proto::Record {
    proto::Record {
        partition: Some(partition),
        ..record(None, value)
    }
}

/// Asserts that no further record arrives for a while: a check that can only pass
/// wrongly on a slow machine, never fail wrongly.
pub async fn assert_no_more_records(stream: &mut Streaming<proto::SubscribeResponse>) {
    if let Some(record) = record_within(stream, Duration::from_millis(500)).await {
        panic!("unexpected record {record:?}");
    }
}

/// Publishes `records` to `topic`; panics on error.
pub async fn publish(
    client: &mut PublisherServiceClient<Channel>,
    topic: &str,
    records: Vec<proto::Record>,
) -> Vec<proto::RecordResult> {
    client
        .publish(proto::PublishRequest {
            topic: topic.into(),
            records,
        })
        .await
        .unwrap_or_else(|s| panic!("publish to {topic}: {s:?}"))
        .into_inner()
        .results
}

/// Opens a Subscribe stream; panics on error.
pub async fn subscribe(
    client: &mut SubscriberServiceClient<Channel>,
    request: proto::SubscribeRequest,
) -> Streaming<proto::SubscribeResponse> {
    client
        .subscribe(request)
        .await
        .unwrap_or_else(|s| panic!("subscribe: {s:?}"))
        .into_inner()
}

/// The next event of a stream that is a record, skipping control events
/// (assignments, the started id), waiting at most `PATIENCE`.
pub async fn next_record(
    stream: &mut Streaming<proto::SubscribeResponse>,
) -> proto::ConsumedRecord {
    record_within(stream, PATIENCE)
        .await
        .expect("a record within PATIENCE")
}

/// The next `n` records of a stream.
pub async fn next_records(
    stream: &mut Streaming<proto::SubscribeResponse>,
    n: usize,
) -> Vec<proto::ConsumedRecord> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next_record(stream).await);
    }
    out
}

/// The next record within `wait`, skipping control events; `None` if none came.
/// For "nothing more arrives" checks, which pass on a slow machine too (a slow
/// machine only delays records).
pub async fn record_within(
    stream: &mut Streaming<proto::SubscribeResponse>,
    wait: Duration,
) -> Option<proto::ConsumedRecord> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => return None,
            Ok(Ok(Some(proto::SubscribeResponse {
                event: Some(proto::subscribe_response::Event::Record(record)),
            }))) => return Some(record),
            Ok(Ok(Some(proto::SubscribeResponse { event: Some(_) }))) => continue,
            Ok(other) => panic!("expected a record or nothing, got {other:?}"),
        }
    }
}

/// Subscribe request for a topic without a group.
pub fn partitions_request(topic: &str, start: proto::StartPosition) -> proto::SubscribeRequest {
    proto::SubscribeRequest {
        topics: vec![topic.into()],
        start: start as i32,
        ..Default::default()
    }
}

/// Subscribe request for a topic in a group.
pub fn group_request(
    topic: &str,
    group: &str,
    start: proto::StartPosition,
) -> proto::SubscribeRequest {
    proto::SubscribeRequest {
        topics: vec![topic.into()],
        group_id: group.into(),
        start: start as i32,
        ..Default::default()
    }
}

/// UTF-8 text of a record's value.
pub fn value_of(record: &proto::ConsumedRecord) -> String {
    String::from_utf8(record.value.clone().unwrap_or_default().to_vec()).unwrap()
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

/// Resident memory of a process, in bytes.
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// The real `kafka-gateway` binary, run as a child process on a free port.
pub struct GatewayProcess {
    pub child: std::process::Child,
    pub port: u16,
}

impl GatewayProcess {
    /// Starts `kafka-gateway serve` on the test broker with `extra` flags.
    pub fn spawn(extra: &[&str]) -> GatewayProcess {
        GatewayProcess::spawn_on(&brokers(), extra)
    }

    /// Starts `kafka-gateway serve` on the broker at `brokers` with `extra` flags.
    pub fn spawn_on(brokers: &str, extra: &[&str]) -> GatewayProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--listen", &listen, "--brokers", brokers];
        args.extend_from_slice(extra);
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-gateway"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start the binary");
        GatewayProcess { child, port }
    }

    /// A channel to it, once it listens.
    pub async fn channel(&self) -> Channel {
        let url = format!("http://127.0.0.1:{}", self.port);
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Ok(channel) = Channel::from_shared(url.clone()).unwrap().connect().await {
                    break channel;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the gateway listens")
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the process.
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }
}

/// Sends `signal` (e.g. "TERM", "STOP") to the process `pid`, through kill(1) so
/// that the tests need no unsafe code.
pub fn send_signal(pid: u32, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "signal {signal} to {pid}");
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A nisshi broker of a test's own, for faults that would disturb other tests: a
/// restart (its sqlite storage survives one) or a stall.
pub struct OwnBroker {
    dir: tempfile::TempDir,
    port: u16,
    process: Option<std::process::Child>,
}

impl OwnBroker {
    /// Starts a broker on a free port and waits until it listens.
    pub fn start() -> OwnBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut broker = OwnBroker {
            dir: tempfile::tempdir().unwrap(),
            port,
            process: None,
        };
        broker.restart();
        broker
    }

    /// Its bootstrap address.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and storage, and waits until it listens.
    pub fn restart(&mut self) {
        let url = format!("tcp://{}", self.address());
        let child = std::process::Command::new("nisshi")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args([
                "--storage-engine",
                "sqlite://broker.db",
                "--group-initial-rebalance-delay",
                "100ms",
            ])
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nisshi on PATH (scripts/test installs it)");
        self.process = Some(child);
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(self.address()).is_err() {
            assert!(started.elapsed() < PATIENCE, "the broker did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker as an operator's restart does (SIGTERM), and kills it if it
    /// has not exited within PATIENCE. nisshi with sqlite storage killed with
    /// SIGKILL was seen to lose records it had acknowledged (a later record then
    /// got the same offset); Kafka keeps them across a process kill.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            send_signal(child.id(), "TERM");
            let started = std::time::Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if started.elapsed() > PATIENCE {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
    }
}

impl OwnBroker {
    /// Freezes the broker (SIGSTOP): connections stay open and nothing is
    /// answered, as with a broker stuck in a long pause.
    pub fn pause(&self) {
        self.send("STOP");
    }

    /// Lets a paused broker go on (SIGCONT).
    pub fn resume(&self) {
        self.send("CONT");
    }

    fn send(&self, signal: &str) {
        let child = self.process.as_ref().expect("the broker runs");
        send_signal(child.id(), signal);
    }

    /// Creates `name` with `partitions` partitions on this broker.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        create_topic_on(&self.address(), name, partitions).await;
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        // A paused broker would not see SIGTERM.
        if let Some(child) = &self.process {
            send_signal(child.id(), "CONT");
        }
        self.stop();
    }
}
