//! Scenario tests of the simulator core, one binary so that it compiles once.
//! Each module tests one area; `workload` holds the shared random workload.

mod determinism;
mod executor;
mod node;
mod seeds;
mod time;
mod trace;
mod workload;
