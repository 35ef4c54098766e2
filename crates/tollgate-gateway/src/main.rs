//! `tollgate`: the gateway binary.

mod cli;
mod prices;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use tokio::{
    net::TcpListener,
    signal::unix::{Signal, SignalKind, signal},
};
use tollgate_gateway::{
    DEMO_ADMIN_KEY, DEMO_KEY, EMBEDDED_CONFIG, Gateway, GatewayConfig, Telemetry,
    install_prometheus, serve,
};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "tollgate", version, about = "The tollgate LLM gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the gateway (on the embedded demo configuration when given none).
    Serve {
        /// The configuration file; re-read on SIGHUP.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The address to listen on, instead of the configuration's `gateway.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// How logs are written to standard error.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// The least severe level logged: error, warn, info, debug or trace.
        #[arg(long, default_value = "info")]
        log_level: tracing::Level,
        /// For tests: the wall-clock time (RFC 3339) calendar budgets count their periods from,
        /// advancing with the process's clock.
        #[arg(long, hide = true, value_parser = rfc3339)]
        wall_clock: Option<std::time::SystemTime>,
    },
    /// Checks a configuration and prints every mistake with its path (exit code 1 if any).
    Check {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Virtual keys: hashes for the configuration file, and keys in the database.
    Keys {
        #[command(subcommand)]
        command: cli::KeysCommand,
    },
    /// Teams in the database.
    Teams {
        #[command(subcommand)]
        command: cli::TeamsCommand,
    },
    /// Spend from the database's ledger, grouped and totalled.
    Spend(cli::SpendCommand),
    /// The prices calls are billed at: the shipped catalog under a configuration's own, every
    /// one or a model's.
    Prices(prices::PricesCommand),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve {
            config,
            listen,
            log_format,
            log_level,
            wall_clock,
        } => {
            let telemetry = Telemetry::install(matches!(log_format, LogFormat::Json), log_level);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("a Tokio runtime starts");
            let code = runtime.block_on(run(config, listen, wall_clock));
            // The runtime first, so the spans of tasks still running end and are exported too.
            drop(runtime);
            telemetry.shutdown(std::time::Duration::from_secs(5));
            code
        }
        Command::Check { config } => check(&config),
        Command::Keys { command } => cli::keys(command),
        Command::Teams { command } => cli::teams(command),
        Command::Spend(command) => cli::spend(command),
        Command::Prices(command) => prices::prices(command),
    }
}

fn read_config(path: Option<&PathBuf>) -> Result<GatewayConfig, tollgate::ConfigErrors> {
    match path {
        Some(path) => GatewayConfig::load(path),
        None => GatewayConfig::from_yaml(EMBEDDED_CONFIG),
    }
}

fn rfc3339(text: &str) -> Result<std::time::SystemTime, String> {
    let at = text
        .parse::<jiff::Timestamp>()
        .map_err(|error| format!("not an RFC 3339 time: {error}"))?;
    let nanos = u64::try_from(at.as_nanosecond()).map_err(|_| "before 1970".to_owned())?;
    Ok(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos))
}

async fn run(
    path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    wall_clock: Option<std::time::SystemTime>,
) -> ExitCode {
    let config = match read_config(path.as_ref()) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let address = listen.unwrap_or(config.gateway.listen);
    let in_memory = config.database.is_none();
    let table_in_memory = in_memory
        && config.logs.as_ref().is_some_and(|logs| {
            logs.sinks
                .iter()
                .any(|sink| matches!(sink, tollgate_gateway::SinkConfig::Database(_)))
        });
    let metrics = match install_prometheus() {
        Ok(handle) => Some(handle),
        Err(error) => {
            tracing::warn!(%error, "no /metrics: the Prometheus recorder did not install");
            None
        }
    };
    let built = match wall_clock {
        Some(start) => Gateway::with_wall_clock(config, metrics, start),
        None => Gateway::with_metrics(config, metrics),
    };
    let gateway = match built {
        Ok(gateway) => gateway,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = gateway.open_records().await {
        eprintln!("the database cannot be used: {error}");
        return ExitCode::FAILURE;
    }
    if in_memory {
        tracing::warn!(
            "no `database` section: keys and teams made over /admin/ and the spend ledger are kept \
             in memory and lost on restart; add `database: {{ url: \"sqlite://tollgate.db\" }}` to keep them"
        );
    }
    if table_in_memory {
        tracing::warn!(
            "the call log's database sink writes to that database in memory: it grows with every \
             call until its `retention_days`; give the gateway a `database` section"
        );
    }
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {address}: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Every handler is in place before the address is printed: whoever reads it may signal.
    let shutdown = terminated();
    let hangups = signal(SignalKind::hangup()).expect("SIGHUP can be handled");
    let bound = listener.local_addr().unwrap_or(address);
    // The first line on standard output says where to call; tests and scripts read it.
    println!("tollgate listening on http://{bound}");
    if path.is_none() {
        println!(
            "serving the embedded demo configuration (simulated providers). Try:\n  \
             curl http://{bound}/v1/chat/completions -H 'Authorization: Bearer {DEMO_KEY}' \
             -H 'Content-Type: application/json' \
             -d '{{\"model\": \"default\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'\n\
             the live page: http://{bound}/ui?key={DEMO_ADMIN_KEY}"
        );
    }
    tokio::spawn(reload_on_hangup(hangups, gateway.clone(), path));
    match serve(gateway.clone(), listener, shutdown).await {
        Ok(()) => {
            if let Err(error) = gateway.flush_records().await {
                tracing::error!(%error, "the spend ledger could not be written before exit");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are in place when this returns, so a signal sent
/// once the address is printed is never missed.
fn terminated() -> impl std::future::Future<Output = ()> {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM can be handled");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT can be handled");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    }
}

/// On each SIGHUP, reads the configuration file again and swaps it in if it is whole; a bad one
/// is logged, mistake by mistake, and the old one keeps serving.
async fn reload_on_hangup(mut hangups: Signal, gateway: Gateway, path: Option<PathBuf>) {
    while hangups.recv().await.is_some() {
        let Some(path) = &path else {
            tracing::info!("SIGHUP: the embedded configuration has no file to read again");
            continue;
        };
        match GatewayConfig::load(path).and_then(|config| gateway.reload(config)) {
            Ok(()) => tracing::info!(path = %path.display(), "SIGHUP: configuration reloaded"),
            Err(errors) => {
                for error in errors.errors() {
                    tracing::error!(
                        path = error.path(),
                        reason = error.reason(),
                        "SIGHUP: the configuration was not reloaded"
                    );
                }
            }
        }
    }
}

fn check(path: &PathBuf) -> ExitCode {
    let built = GatewayConfig::load(path).and_then(|config| {
        // Building finds what reading cannot: unset API key variables, cache directories.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime starts");
        let _inside = runtime.enter();
        Gateway::new(config).map(|_| ())
    });
    match built {
        Ok(()) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            println!("{errors}");
            ExitCode::FAILURE
        }
    }
}
