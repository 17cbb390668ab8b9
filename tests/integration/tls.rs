//! TLS on the gRPC listener, over real TLS with certificates made here: records go
//! through, plaintext and wrong certificates are refused, client certificates are
//! checked as configured, and replaced certificate files take effect for new
//! connections while open ones keep theirs.

use kafka_gateway::transport::proto::{
    self, publisher_service_client::PublisherServiceClient, StartPosition,
};
use kafka_gateway_test_kit::*;
use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};
use tempfile::TempDir;
use tonic::transport::Channel;

/// The files of a TLS setup in a directory of the test's own.
struct Files {
    _dir: TempDir,
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
}

impl Files {
    fn new(server: &Leaf, client_ca: Option<&Authority>) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let files = Files {
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
            client_ca: dir.path().join("client-ca.pem"),
            _dir: dir,
        };
        server.write(&files.cert, &files.key);
        if let Some(ca) = client_ca {
            replace(&files.client_ca, ca.pem.as_bytes());
        }
        files
    }

    /// `--tls-cert` and `--tls-key` flags, then `extra`.
    fn flags(&self, extra: &[&str]) -> Vec<String> {
        let mut flags = vec![
            "--tls-cert".to_string(),
            self.cert.display().to_string(),
            "--tls-key".to_string(),
            self.key.display().to_string(),
        ];
        flags.extend(extra.iter().map(|s| s.to_string()));
        flags
    }

    fn client_ca_flag(&self) -> String {
        self.client_ca.display().to_string()
    }
}

fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// A Publish of one record on `channel`: its result or the call's status.
async fn try_publish(channel: Channel, topic: &str) -> Result<i64, tonic::Status> {
    let response = PublisherServiceClient::new(channel)
        .publish(proto::PublishRequest {
            topic: topic.into(),
            records: vec![record(None, "over tls")],
        })
        .await?;
    Ok(response.into_inner().results[0].offset)
}

/// Whether a client trusting `ca` and presenting `identity` gets a Publish through.
async fn publishes(
    addr: std::net::SocketAddr,
    ca: &Authority,
    identity: Option<&Leaf>,
    topic: &str,
) -> bool {
    match tls_endpoint(addr, ca, identity).connect().await {
        Ok(channel) => try_publish(channel, topic).await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn records_round_trip_over_tls_and_plaintext_is_refused() {
    let ca = Authority::new("test CA");
    let files = Files::new(&ca.server(), None);
    let gw = TestGateway::start(&strs(&files.flags(&[]))).await;
    let topic = topic(1).await;
    let channel = tls_endpoint(gw.addr, &ca, None)
        .connect()
        .await
        .expect("TLS connection");
    let mut publisher = PublisherServiceClient::new(channel.clone());
    let written = publish(&mut publisher, &topic, numbered(3)).await;
    assert_eq!(written.len(), 3);
    let mut subscriber = proto::subscriber_service_client::SubscriberServiceClient::new(channel);
    let mut stream = subscribe(
        &mut subscriber,
        partitions_request(&topic, StartPosition::Earliest),
    )
    .await;
    let records = next_records(&mut stream, 3).await;
    assert_eq!(value_of(&records[2]), "2");

    // A plaintext client gets no answer from a TLS listener.
    let plaintext = match endpoint(gw.addr).connect().await {
        Ok(channel) => try_publish(channel, &topic).await.is_ok(),
        Err(_) => false,
    };
    assert!(
        !plaintext,
        "a plaintext Publish went through a TLS listener"
    );
    // Nor does a client that trusts another authority.
    let stranger = Authority::new("another CA");
    assert!(!publishes(gw.addr, &stranger, None, &topic).await);
    gw.stop().await;
}

#[tokio::test]
async fn the_listener_speaks_tls_1_2_and_1_3_with_alpn_h2() {
    let ca = Authority::new("test CA");
    let files = Files::new(&ca.server(), None);
    let gw = TestGateway::start(&strs(&files.flags(&[]))).await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let roots = Arc::new(roots);
    for (version, name) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let server_name = rustls_pki_types::ServerName::try_from(SERVER_NAME).unwrap();
        let tls = connector
            .connect(server_name, tcp)
            .await
            .unwrap_or_else(|e| panic!("{name:?} handshake: {e}"));
        let (_, session) = tls.get_ref();
        assert_eq!(session.protocol_version(), Some(name));
        assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]), "{name:?}");
    }
    gw.stop().await;
}

use rustls_pki_types::pem::PemObject;

/// A gateway that checks client certificates with `mode`, the authority its
/// own certificate is from, and a topic.
async fn checking_client_certificates(mode: &str) -> (TestGateway, Authority, String, Leaf, Leaf) {
    let server_ca = Authority::new("server CA");
    let client_ca = Authority::new("client CA");
    let files = Files::new(&server_ca.server(), Some(&client_ca));
    let ca_flag = files.client_ca_flag();
    let flags = files.flags(&["--tls-client-ca", &ca_flag, "--tls-client-auth", mode]);
    let gw = TestGateway::start(&strs(&flags)).await;
    let trusted = client_ca.issue("billing", &["billing.example"]);
    let stranger = Authority::new("stranger CA").issue("billing", &["billing.example"]);
    (gw, server_ca, topic(1).await, trusted, stranger)
}

#[tokio::test]
async fn required_client_certificates_come_from_the_client_ca() {
    let (gw, server_ca, topic, trusted, stranger) = checking_client_certificates("required").await;
    assert!(publishes(gw.addr, &server_ca, Some(&trusted), &topic).await);
    assert!(
        !publishes(gw.addr, &server_ca, None, &topic).await,
        "no certificate"
    );
    assert!(
        !publishes(gw.addr, &server_ca, Some(&stranger), &topic).await,
        "a certificate of another authority"
    );
    gw.stop().await;
}

#[tokio::test]
async fn optional_client_certificates_let_clients_without_one_in() {
    let (gw, server_ca, topic, trusted, stranger) = checking_client_certificates("optional").await;
    assert!(publishes(gw.addr, &server_ca, Some(&trusted), &topic).await);
    assert!(
        publishes(gw.addr, &server_ca, None, &topic).await,
        "no certificate"
    );
    assert!(
        !publishes(gw.addr, &server_ca, Some(&stranger), &topic).await,
        "a certificate of another authority is still checked"
    );
    gw.stop().await;
}

/// The gateway binary with TLS, its stderr collected, so a test can wait for a
/// log line rather than for time to pass.
struct LoggingGateway {
    process: GatewayProcess,
    log: Arc<Mutex<String>>,
}

impl LoggingGateway {
    fn spawn(flags: &[String]) -> LoggingGateway {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = std::process::Command::new(gateway_binary!())
            .args(["serve", "--listen", &listen, "--brokers", &brokers()])
            .args(flags)
            .env("KAFKA_GATEWAY_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the binary");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        LoggingGateway {
            process: GatewayProcess { child, port },
            log,
        }
    }

    /// Waits (bounded) until the log has `count` lines containing `text`.
    async fn wait_for_log(&self, text: &str, count: usize) {
        let waited = tokio::time::timeout(PATIENCE, async {
            while self.log.lock().unwrap().matches(text).count() < count {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "no {text:?} in the log:\n{}",
            self.log.lock().unwrap()
        );
    }
}

#[tokio::test]
async fn replaced_certificates_serve_new_connections_and_broken_ones_are_refused() {
    let first_ca = Authority::new("first CA");
    let files = Files::new(&first_ca.server(), None);
    let gateway = LoggingGateway::spawn(&files.flags(&["--tls-reload-interval", "50ms"]));
    let addr = gateway.process.addr();
    let topic = topic(1).await;
    let open = connect_when_listening(tls_endpoint(addr, &first_ca, None)).await;
    try_publish(open.clone(), &topic)
        .await
        .expect("first certificate");

    // A new certificate from another authority: new connections get it.
    let second_ca = Authority::new("second CA");
    second_ca.server().write(&files.cert, &files.key);
    gateway
        .wait_for_log("new connections use the new ones", 1)
        .await;
    assert!(
        publishes(addr, &second_ca, None, &topic).await,
        "the new certificate"
    );
    assert!(
        !publishes(addr, &first_ca, None, &topic).await,
        "a new connection still got the old certificate"
    );
    // The connection opened before keeps working on its own session.
    try_publish(open.clone(), &topic)
        .await
        .expect("an open connection keeps its TLS session");

    // A broken certificate file is logged once and changes nothing.
    replace(&files.cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n");
    gateway.wait_for_log("cannot be used; keeping", 1).await;
    assert!(
        publishes(addr, &second_ca, None, &topic).await,
        "the certificate before the broken file"
    );
    // A key that does not belong to the certificate is refused the same way.
    let third = Authority::new("third CA").server();
    replace(&files.cert, third.cert.as_bytes());
    gateway.wait_for_log("cannot be used; keeping", 2).await;
    assert!(publishes(addr, &second_ca, None, &topic).await);
    drop(open);
}

#[tokio::test]
async fn a_certificate_that_cannot_be_used_stops_the_start_with_one_line() {
    let ca = Authority::new("test CA");
    let files = Files::new(&ca.server(), None);
    std::fs::write(&files.key, "no key here").unwrap();
    let output = std::process::Command::new(gateway_binary!())
        .args(["serve", "--listen", "127.0.0.1:0", "--brokers", &brokers()])
        .args(files.flags(&[]))
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--tls-key"), "{stderr}");
    let missing = std::process::Command::new(gateway_binary!())
        .args([
            "serve",
            "--brokers",
            &brokers(),
            "--tls-cert",
            "/nonexistent.pem",
        ])
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--tls-key"), "{stderr}");
}
