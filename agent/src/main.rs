//! The `tapline` binary.

use std::process::ExitCode;

use clap::Parser;
use tapline::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tapline::logging::init(&cli.common);
    match tapline::run::main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One clear sentence, no backtrace.
            tracing::error!("{e}");
            eprintln!("tapline: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
