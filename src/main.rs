//! The `ringmail` binary: parse the command line and run it.

use clap::Parser;

fn main() -> std::process::ExitCode {
    ringmail::cli::run(ringmail::cli::Cli::parse())
}
