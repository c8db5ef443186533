//! The harness for any system that runs on `sim`: fault plans, swarm drawing, the
//! nemesis, the sweep runner, shrinking, replay, plan files, a regression corpus and
//! the determinism check, behind one trait, [`System`].
//!
//! A user implements [`System`] for their system (build it on a [`sim::Sim`], drive
//! it, judge it) and gets a command line with `sweep`, `replay`, `shrink`,
//! `check-determinism` and `merge` in a few lines:
//!
//! ```no_run
//! # use sim_harness::*;
//! # struct Register;
//! # struct World;
//! # impl Target<NoFault> for World {
//! #     fn node_count(&self) -> usize { 3 }
//! #     fn node(&self, _: usize) -> Option<sim::NodeId> { None }
//! # }
//! # impl System for Register {
//! #     type Fault = NoFault;
//! #     type World = World;
//! #     fn command(&self) -> String { String::new() }
//! #     fn profiles(&self) -> Vec<Profile<NoFault>> { Vec::new() }
//! #     fn node_count(&self, _: &Record) -> usize { 3 }
//! #     fn build(&self, _: &mut sim::Sim, _: &Run<NoFault>) -> Result<World, String> { Ok(World) }
//! #     fn check(&self, _: &mut sim::Sim, _: &mut World, _: &Run<NoFault>) -> Vec<Violation> { Vec::new() }
//! # }
//! fn main() -> std::process::ExitCode {
//!     Main::new(&Register, "register", "sweeps of a replicated register").run()
//! }
//! ```
//!
//! `examples/register/` is a whole system written this way, with a bug a flag turns
//! on; the README's "Test your own system" walks through it.
//!
//! # Map of the crate
//!
//! - `system.rs`: [`System`], the trait; [`Run`] (what one run is), [`run`] (one run,
//!   end to end, never unwinding), [`Report`], [`Verdict`], [`Violation`], and
//!   [`drive`], the default fault phase and quiet period.
//! - `fault.rs`: [`Fault`], [`Episode`], [`Plan`], [`LinkTail`], and
//!   [`CustomFault`], the faults a system adds ([`NoFault`]: none).
//! - `profile.rs`: [`Profile`] and [`Kind`], and the swarm draw of a plan.
//! - `nemesis.rs`: [`Target`] (the nodes a plan names), [`Nemesis`] and [`timeline`].
//! - `record.rs`: [`Record`], a run in one line of words; [`Knob`], a system's own.
//! - `plan_file.rs`: a record and its exact plan as a file.
//! - `shrink.rs`: delta debugging of a failing run.
//! - `sweep.rs`, `output.rs`, `merge.rs`: many seeds on threads, their summary
//!   (table, JSON lines, JUnit), and shards merged back.
//! - `corpus.rs`: `seeds.txt`, replayed from a test.
//! - `cli.rs`, `commands.rs`: [`Main`], the command line.

#![deny(missing_docs)]

mod cli;
mod commands;
mod corpus;
mod fault;
mod merge;
mod nemesis;
mod output;
mod plan_file;
mod profile;
mod record;
mod shrink;
mod sweep;
mod system;

pub use crate::cli::Main;
pub use crate::corpus::{CorpusEntry, CorpusError, parse_corpus, replay_corpus};
pub use crate::fault::{
    CustomFault, EPISODES_PER_KIND_MAX, Episode, Fault, LinkTail, Memory, NoFault, Plan,
    TAIL_LATENCY_MS_MAX, node_name,
};
pub use crate::nemesis::{Action, Nemesis, Step, Target, timeline};
pub use crate::output::{append_failures, say_line, write_junit};
pub use crate::plan_file::{PlanFileError, parse_node, parse_plan_file, write_plan_file};
pub use crate::profile::{Kind, Profile, buggify_drawn};
pub use crate::record::{Knob, PHASE_SECONDS_MAX, Record, RecordError, Vocabulary};
pub use crate::shrink::{SHRINK_RUNS_MAX, ShrinkReport, shrink};
pub use crate::sweep::{Failure, JOBS_MAX, Summary, Sweep, failure, replay_command, sweep};
pub use crate::system::{
    Capture, Class, Outcome, Report, Run, System, Verdict, Violation, drive, parse_record,
    profile_names, run,
};
