//! The `strata` server binary: configuration, logging, start, and shutdown on a signal.

use std::process::ExitCode;

use strata::config::{Config, ConfigError};
use strata::server::shutdown;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Each partition holds a file descriptor: use all the descriptors the hard limit
    // allows (the broker then refuses creations it could not reopen, see
    // `broker::partition_limits`).
    match strata::broker::partition_limits::raise_open_file_limit() {
        Ok((before, after)) if before != after => {
            tracing::info!(
                ?before,
                ?after,
                "raised the soft open-file limit to the hard limit"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the soft open-file limit"),
    }
    let config = match Config::load() {
        Ok(config) => config,
        Err(ConfigError::Invalid(e)) => e.exit(),
        Err(e) => {
            eprintln!("strata: {e}");
            return ExitCode::from(2);
        }
    };
    let running = match strata::start(config).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("strata: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One line on stdout once clients can connect (scripts and tests wait for it).
    println!("strata listening on {}", running.local_addr());
    shutdown::signal().await;
    tracing::info!("stop signal received; shutting down");
    running.shutdown().await;
    ExitCode::SUCCESS
}
