//! The `quorra` binary.

use clap::{Parser, Subcommand};
use quorra_server::Settings;

/// quorra: a distributed in-memory cache that speaks the Redis protocol.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node.
    Server(Box<Settings>),
    /// Start a local cluster of separate nodes on 127.0.0.1 and stop it on Ctrl-C.
    Up(quorra_server::up::UpArgs),
    /// Load a quorra or Redis server with a cache-like workload and report throughput,
    /// hit ratio and latency percentiles.
    Bench(quorra_bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Server(settings) => {
            let config = match settings.with_file().and_then(Settings::resolve) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("quorra: {error}");
                    return std::process::ExitCode::from(2);
                }
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.threads)
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(run_server(config))
        }
        Command::Up(args) => quorra_server::up::main(args),
        Command::Bench(args) => quorra_bench::main(args),
    }
}

async fn run_server(config: quorra_server::Config) -> std::process::ExitCode {
    let server = match quorra_server::start(config).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("quorra: cannot start: {error}");
            return std::process::ExitCode::from(1);
        }
    };
    match &server.shared.cluster {
        // `quorra up` reads this line to learn the node's cluster port.
        Some(node) => println!(
            "quorra listening: RESP {} HTTP http://{} cluster {}",
            server.resp_addr, server.http_addr, node.addresses.cluster
        ),
        None => println!(
            "quorra listening: RESP {} HTTP http://{}",
            server.resp_addr, server.http_addr
        ),
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    std::process::ExitCode::SUCCESS
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
