//! The `everynode` binary: parse the command line, run it, map errors to exit codes in one place.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // clap prints its own usage errors and exits with code 2.
    let cli = everynode::cli::Cli::parse();
    match everynode::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(everynode::error::exit_code(&err))
        }
    }
}
