//! `cachesim`: fault-injection sweeps over many seeds, and the replay of one.
//!
//! `cargo run --release -- sweep` runs the default sweep; `--help` on any command says
//! what it takes.

// A command-line tool reports to its user on stdout and stderr, measures its own wall
// time for the figures, and runs seeds on threads (each thread runs whole simulations
// of its own; nothing is shared but the seed counter).
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
