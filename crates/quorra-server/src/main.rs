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
    // Before the node says it is listening: a SIGHUP sent as soon as that line appears
    // must reach the reload, not the default action, which ends the process.
    let mut signals = Signals::install();
    let server =
        match quorra_server::start(config, std::sync::Arc::new(quorra_store::SystemClock)).await {
            Ok(server) => server,
            Err(error) => {
                eprintln!("quorra: cannot start: {error}");
                return std::process::ExitCode::from(1);
            }
        };
    // `quorra up` reads this line to learn the node's cluster port.
    let scheme = match &server.shared.config.tls {
        Some(tls) if tls.http => "https",
        _ => "http",
    };
    let mut line = format!(
        "quorra listening: RESP {} HTTP {scheme}://{}",
        server.resp_addr, server.http_addr
    );
    if let Some(node) = &server.shared.cluster {
        line.push_str(&format!(" cluster {}", node.addresses.cluster));
    }
    if let Some(tls) = server.tls_addr {
        line.push_str(&format!(" TLS {tls}"));
    }
    println!("{line}");
    signals.serve(&server).await;
    tracing::info!("shutting down");
    server.shutdown().await;
    std::process::ExitCode::SUCCESS
}

/// The signals a running node answers.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            interrupt: signal(SignalKind::interrupt()).expect("SIGINT handler"),
            terminate: signal(SignalKind::terminate()).expect("SIGTERM handler"),
            hangup: signal(SignalKind::hangup()).expect("SIGHUP handler"),
        }
    }

    /// Resolves on SIGINT (Ctrl-C), SIGTERM or `QUORRA LEAVE`; on SIGHUP, reloads the
    /// TLS files.
    async fn serve(&mut self, server: &quorra_server::RunningServer) {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return,
                _ = self.terminate.recv() => return,
                () = server.shared.leave_requested.cancelled() => return,
                _ = self.hangup.recv() => match server.reload_tls() {
                    Ok(()) if server.shared.config.tls.is_none() => {
                        tracing::info!("SIGHUP: nothing to reload (no TLS configured)");
                    }
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate, key and CA files reloaded"),
                    Err(error) => tracing::error!(%error, "SIGHUP: TLS files not reloaded; the previous ones stay in use"),
                },
            }
        }
    }
}
