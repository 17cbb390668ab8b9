//! The Kafka-protocol broker: the shared one the test and bench scripts start,
//! and brokers of a test's own for faults that would disturb the others.

use crate::{names::free_port, process::send_signal, topics::create_topic_on, PATIENCE};
use std::time::Duration;

/// Bootstrap address of the test broker, which scripts/test starts.
pub fn brokers() -> String {
    brokers_from(
        "KAFKA_GATEWAY_TEST_BROKERS",
        "run the tests with scripts/test, which starts a broker",
    )
}

/// Bootstrap address in the environment variable `var`: the scripts start the
/// broker on a free port, so only they know where it is. `hint` says how to run
/// when it is not set.
pub fn brokers_from(var: &str, hint: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: {hint}"))
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
        let mut broker = OwnBroker {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
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
