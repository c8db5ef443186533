//! A replicated register tested with `sim-harness`: its sweep, replay and shrink.
//!
//! ```text
//! cargo run --release -p sim-harness --example register -- sweep --count 100
//! cargo run --release -p sim-harness --example register -- sweep --count 100 --bug read-one
//! ```
//!
//! `register.rs` is the protocol, `harness.rs` the system as the harness sees it;
//! this file is the whole sweep binary.

mod harness;
mod register;

fn main() -> std::process::ExitCode {
    let about = "Deterministic simulation testing of a replicated register";
    sim_harness::Main::new(&harness::Register, "register", about).run()
}
