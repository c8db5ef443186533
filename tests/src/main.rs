//! `cachesim`: fault-injection sweeps over many seeds, and the replay of one.
//!
//! `cargo run --release -- sweep` runs the default sweep; `--help` on any command says
//! what it takes.

// A command-line tool reports to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
#[cfg(feature = "net")]
mod net_cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
