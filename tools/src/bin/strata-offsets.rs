//! `strata-offsets`: consumer group lag, offset resets, replay, open transactions and
//! offline log reading.
//! Errors are one line on stderr and exit status 1; usage errors exit 2 (clap).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use strata_tools::offsets::{run, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata-offsets: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = runtime.block_on(run(cli, &mut out));
    let flushed = out.flush();
    match result {
        Ok(()) => match flushed {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("strata-offsets: error: writing output: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("strata-offsets: error: {e}");
            ExitCode::FAILURE
        }
    }
}
