//! The `kafka-gateway` binary: parse the configuration, start, serve until a signal.

use kafka_gateway::{
    config::{Cli, Command},
    embedded_broker::EmbeddedBroker,
    server::Gateway,
    shutdown, telemetry,
};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::load(std::env::args_os()) {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(), // --help, --version
        Err(err) => {
            // One line saying what is wrong; clap's usage hint adds nothing to it.
            let rendered = err.render().to_string();
            eprintln!(
                "{}",
                rendered
                    .lines()
                    .next()
                    .unwrap_or("error: invalid arguments")
            );
            return ExitCode::from(2);
        }
    };
    let Command::Serve(config) = cli.command;
    telemetry::init();
    if let Err(err) = config.validate() {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    // The embedded broker must outlive the gateway; it stays on this stack frame.
    let embedded = if config.embedded_broker {
        match EmbeddedBroker::start() {
            Ok(broker) => {
                tracing::warn!(
                    brokers = %broker.bootstrap_servers(),
                    "using the embedded demo broker: librdkafka's in-memory mock cluster, NOT Kafka; everything is lost on exit"
                );
                Some(broker)
            }
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let brokers = match (&embedded, &config.brokers) {
        (Some(broker), _) => broker.bootstrap_servers(),
        (None, Some(brokers)) => brokers.clone(),
        (None, None) => unreachable!("validate() requires brokers or the embedded broker"),
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("error: cannot listen on {}: {err}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    let gateway = match Gateway::new(&config, brokers) {
        Ok(gateway) => gateway,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    match gateway.serve(listener, shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
