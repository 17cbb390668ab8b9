//! The `kafka-gateway` binary: parse the configuration, start, serve until a signal.

use kafka_gateway::{
    cli::{Cli, Command},
    embedded_broker::EmbeddedBroker,
    server::Gateway,
    shutdown, telemetry,
};
use std::process::ExitCode;

/// mimalloc: a record on its way through the gateway is a few short-lived
/// allocations, and the system allocator's share of a Subscribe drain was a fifth
/// of the gateway's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run());
    // The gateway already waited its shutdown grace; a Kafka client still closing
    // on the blocking pool must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

async fn run() -> ExitCode {
    let cli = match Cli::load(std::env::args_os()) {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(), // --help, --version
        Err(err) => {
            // One line saying what is wrong; clap's usage hint adds nothing to it,
            // but a missing argument is named on the lines before it.
            let rendered = err.render().to_string();
            let line: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty() && !l.starts_with("Usage:"))
                .collect();
            eprintln!("{}", line.join(" "));
            return ExitCode::from(2);
        }
    };
    let Command::Serve(config) = cli.command;
    telemetry::init();
    if let Err(err) = config.validate() {
        for problem in err.problems() {
            eprintln!("error: {problem}");
        }
        return ExitCode::from(2);
    }
    // The embedded broker must outlive the gateway; it stays on this stack frame.
    let embedded = if config.kafka.embedded_broker {
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
    let bootstrap_servers = match (&embedded, &config.kafka.brokers) {
        (Some(broker), _) => broker.bootstrap_servers(),
        (None, Some(brokers)) => brokers.clone(),
        (None, None) => unreachable!("validate() requires brokers or the embedded broker"),
    };
    let listener = match tokio::net::TcpListener::bind(config.server.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("error: cannot listen on {}: {err}", config.server.listen);
            return ExitCode::FAILURE;
        }
    };
    let gateway = match Gateway::new(&config, bootstrap_servers) {
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
