//! Builds the gateway (managers and gRPC services) and runs it until shutdown.

use crate::{
    config::{Config, ServerConfig},
    kafka::{self, Admin, ConsumerManager, KafkaSettings, Lookups, ProducerManager},
    transport::{
        http2,
        layers::{GrpcOnly, RequestSize, StampArrival},
        proto::{
            publisher_service_server::PublisherServiceServer,
            subscriber_service_server::SubscriberServiceServer, FILE_DESCRIPTOR_SET,
        },
        tls::{Tls, TlsError},
        Publisher, StreamLimits, Subscriber,
    },
};
use std::{future::Future, sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tower::Layer;
use tracing::{info, warn};

/// Why the gateway could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A Kafka client could not be created (usually a bad `--kafka-config`).
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    /// The TLS certificate, key or client CA cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// Reflection could not load the API descriptors.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// The gateway: the shared managers and the settings of its gRPC server.
pub struct Gateway {
    producer: Arc<ProducerManager>,
    consumers: Arc<ConsumerManager>,
    admin: Arc<Admin>,
    shutdown: CancellationToken,
    stream_limits: StreamLimits,
    server: ServerConfig,
    tls: Option<Arc<Tls>>,
}

impl Gateway {
    /// Creates the Kafka clients for `bootstrap_servers`. Nothing connects yet: librdkafka
    /// connects in the background, and requests fail with UNAVAILABLE until it can.
    pub fn new(config: &Config, bootstrap_servers: String) -> Result<Gateway, ServeError> {
        let settings = KafkaSettings::new(config, bootstrap_servers);
        let shutdown = CancellationToken::new();
        let lookups = Lookups::new(&settings)?;
        Ok(Gateway {
            producer: Arc::new(ProducerManager::new(&settings)?),
            consumers: Arc::new(ConsumerManager::new(
                &settings,
                &lookups,
                shutdown.child_token(),
            )),
            admin: Arc::new(Admin::new(&settings, &lookups)),
            shutdown,
            stream_limits: StreamLimits {
                max_in_flight: config.producer.publish_stream_in_flight,
                max_message_bytes: config.kafka.max_message_bytes,
            },
            server: config.server.clone(),
            tls: Tls::load(&config.server.tls)?,
        })
    }

    /// The consumer manager, to observe subscriptions (tests, later metrics).
    pub fn consumers(&self) -> Arc<ConsumerManager> {
        self.consumers.clone()
    }

    /// The shared producer, to observe it (tests, later metrics).
    pub fn producer(&self) -> Arc<ProducerManager> {
        self.producer.clone()
    }

    /// Serves on `listener` until `signal` resolves, then shuts down in order: stop
    /// accepting, end Subscribe streams (UNAVAILABLE), let in-flight Publish calls
    /// finish, commit and close consumers, flush the producer. All of it shares one
    /// deadline: the shutdown grace from the signal on.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<PublisherServiceServer<Publisher>>()
            .await;
        health
            .set_serving::<SubscriberServiceServer<Subscriber>>()
            .await;
        // Both reflection versions: grpcurl and many other tools still ask v1alpha.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let publisher = PublisherServiceServer::new(Publisher::new(
            self.producer.clone(),
            self.stream_limits,
            self.shutdown.child_token(),
        ))
        .max_decoding_message_size(self.server.max_request_bytes);
        let subscriber = SubscriberServiceServer::new(Subscriber::new(
            self.consumers.clone(),
            self.admin.clone(),
        ))
        .max_decoding_message_size(self.server.max_request_bytes);
        if let Ok(addr) = listener.local_addr() {
            match &self.tls {
                Some(tls) => {
                    info!(%addr, client_certificates = tls.asks_for_client_certificates(), "kafka-gateway listening with TLS")
                }
                None if addr.ip().is_loopback() => {
                    info!(%addr, "kafka-gateway listening in plaintext on loopback")
                }
                None => {
                    warn!(%addr, "kafka-gateway listening in PLAINTEXT on a non-loopback address: anyone on the network can read and send its traffic; set --tls-cert and --tls-key, or keep it behind a sidecar on loopback")
                }
            }
        }
        if let Some(tls) = &self.tls {
            tokio::spawn(tls.clone().watch(self.shutdown.child_token()));
        }
        let routes = Routes::new(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(publisher)
            .add_service(subscriber)
            .prepare();
        // Requests are stamped with their arrival, from which client deadlines
        // count, what is not gRPC is refused before anything decodes it, and an
        // oversized unary request is answered as one.
        let serving = http2::serve(
            listener,
            StampArrival.layer(GrpcOnly.layer(RequestSize.layer(routes))),
            self.server.clone(),
            self.tls.clone(),
            self.shutdown.clone(),
        );
        tokio::pin!(serving);
        let deadline;
        tokio::select! {
            () = &mut serving => {
                deadline = tokio::time::Instant::now() + self.server.shutdown_grace;
            }
            () = signal => {
                info!("shutting down: ending streams and finishing in-flight publishes");
                for service in ["", "kafka_gateway.v1.PublisherService", "kafka_gateway.v1.SubscriberService"] {
                    health.set_service_status(service, ServingStatus::NotServing).await;
                }
                deadline = tokio::time::Instant::now() + self.server.shutdown_grace;
                self.shutdown.cancel();
                if tokio::time::timeout_at(deadline, &mut serving).await.is_err() {
                    warn!(grace = ?self.server.shutdown_grace, "connections still open after the shutdown grace; closing them");
                }
            }
        }
        self.shutdown.cancel();
        if tokio::time::timeout_at(deadline, self.consumers.closed())
            .await
            .is_err()
        {
            warn!(
                live = self.consumers.live_consumers(),
                "consumers still closing after the shutdown grace"
            );
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Err(err) = self
            .producer
            .flush(left.max(Duration::from_millis(100)))
            .await
        {
            warn!(%err, unacknowledged = self.producer.in_flight(), "producer flush incomplete");
        }
        info!("kafka-gateway stopped");
        Ok(())
    }
}
