//! What a sweep reports: its summary and its failures, for people (a table) and for
//! machines (JSON lines, JUnit XML), and read back by `cachesim merge`.
//!
//! With `--json`, a sweep prints one JSON object per line on stdout: a `failure` per
//! failing run, in seed order, then one `summary`:
//!
//! ```text
//! {"type":"failure","seed":17,"record":"swarm 17 fp=0x…","verdict":"safety","checks":"safety: lost-write","message":"…","replay":"cargo run --release -- replay swarm 17 fp=0x… --trace"}
//! {"type":"summary","profile":"swarm","knobs":"","range":[0,2000],"shard":[1,1],"seeds":2000,"failures":1,…}
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// A sweep's totals, and what it swept.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Summary {
    pub(crate) profile: String,
    /// The knobs every run had, as in a run record (`quiet=10 mutant=…`; empty: none).
    pub(crate) knobs: String,
    /// The seed range, before sharding.
    pub(crate) range: (u64, u64),
    /// Shard K of N (1 of 1: not sharded).
    pub(crate) shard: (u64, u64),
    pub(crate) seeds: u64,
    pub(crate) failures: u64,
    pub(crate) events: u64,
    pub(crate) operations: u64,
    pub(crate) virtual_ns: u128,
    pub(crate) availability: cachesim::Availability,
    /// Failures per verdict kind and checkers.
    pub(crate) by_check: BTreeMap<String, u64>,
    /// Per coverage point (every one of `cache::COVERAGE_POINTS`, and any other
    /// `sometimes` or `reachable` met): in how many seeds it fired.
    pub(crate) coverage: BTreeMap<String, u64>,
    pub(crate) wall: Duration,
    pub(crate) jobs: usize,
}

/// One failing run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) seed: u64,
    /// Its run record, with its fingerprint.
    pub(crate) record: String,
    /// pass, safety, liveness, crash or invalid.
    pub(crate) verdict: String,
    /// The verdict's kind and checkers: `safety: lost-write`.
    pub(crate) checks: String,
    /// The verdict in full.
    pub(crate) message: String,
}

impl Summary {
    pub(crate) fn to_json(&self) -> Value {
        let a = self.availability;
        json!({
            "type": "summary",
            "profile": self.profile,
            "knobs": self.knobs,
            "range": [self.range.0, self.range.1],
            "shard": [self.shard.0, self.shard.1],
            "seeds": self.seeds,
            "failures": self.failures,
            "events": self.events,
            "operations": self.operations,
            "virtual_ns": u64::try_from(self.virtual_ns).unwrap_or(u64::MAX),
            "ok": a.ok,
            "failed": a.failed,
            "unknown": a.unknown,
            "probes": a.probes,
            "probes_ok": a.probes_ok,
            "by_check": self.by_check,
            "coverage": self.coverage,
            "wall_seconds": self.wall.as_secs_f64(),
            "jobs": self.jobs,
        })
    }

    pub(crate) fn from_json(value: &Value) -> Result<Summary, String> {
        let pair = |name: &str| -> Result<(u64, u64), String> {
            let items = value[name].as_array().filter(|items| items.len() == 2);
            let items = items.ok_or_else(|| format!("summary without a {name} pair"))?;
            match (items[0].as_u64(), items[1].as_u64()) {
                (Some(a), Some(b)) => Ok((a, b)),
                _ => Err(format!("summary {name} is not two whole numbers")),
            }
        };
        let by_check = value["by_check"]
            .as_object()
            .map(|map| map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect())
            .unwrap_or_default();
        let coverage = value["coverage"]
            .as_object()
            .map(|map| map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect())
            .unwrap_or_default();
        Ok(Summary {
            coverage,
            profile: text(value, "profile")?,
            knobs: text(value, "knobs")?,
            range: pair("range")?,
            shard: pair("shard")?,
            seeds: whole(value, "seeds")?,
            failures: whole(value, "failures")?,
            events: whole(value, "events")?,
            operations: whole(value, "operations")?,
            virtual_ns: u128::from(whole(value, "virtual_ns")?),
            availability: cachesim::Availability {
                ok: whole(value, "ok")?,
                failed: whole(value, "failed")?,
                unknown: whole(value, "unknown")?,
                probes: whole(value, "probes")?,
                probes_ok: whole(value, "probes_ok")?,
            },
            by_check,
            wall: Duration::from_secs_f64(value["wall_seconds"].as_f64().unwrap_or(0.0).max(0.0)),
            jobs: usize::try_from(whole(value, "jobs")?).unwrap_or(usize::MAX),
        })
    }

    /// Adds `other`'s totals (a shard of the same sweep) to these.
    pub(crate) fn absorb(&mut self, other: &Summary) {
        self.seeds += other.seeds;
        self.failures += other.failures;
        self.events += other.events;
        self.operations += other.operations;
        self.virtual_ns += other.virtual_ns;
        self.availability.add(other.availability);
        for (checks, count) in &other.by_check {
            *self.by_check.entry(checks.clone()).or_default() += count;
        }
        for (point, seeds) in &other.coverage {
            *self.coverage.entry(point.clone()).or_default() += seeds;
        }
        self.wall = self.wall.max(other.wall);
        self.jobs += other.jobs;
    }

    /// The table people read.
    pub(crate) fn print(&self) {
        let wall_s = self.wall.as_secs_f64().max(1e-9);
        let virtual_s = self.virtual_ns as f64 / 1e9;
        println!(
            "{:<10} {:>7} {:>8} {:>12} {:>10} {:>10} {:>14} {:>12}",
            "profile", "seeds", "failures", "events", "ops", "seeds/s", "events/s", "virt s/s"
        );
        println!(
            "{:<10} {:>7} {:>8} {:>12} {:>10} {:>10.1} {:>14.0} {:>12.0}",
            self.profile,
            self.seeds,
            self.failures,
            self.events,
            self.operations,
            self.seeds as f64 / wall_s,
            self.events as f64 / wall_s,
            virtual_s / wall_s
        );
        let a = self.availability;
        let all = (a.ok + a.failed + a.unknown).max(1) as f64;
        let share = |count: u64| 100.0 * count as f64 / all;
        println!(
            "operations: {} ok ({:.1}%), {} failed ({:.1}%), {} unknown ({:.1}%)",
            a.ok,
            share(a.ok),
            a.failed,
            share(a.failed),
            a.unknown,
            share(a.unknown)
        );
        println!(
            "probes after heal: {} of {} ok ({:.1}%)",
            a.probes_ok,
            a.probes,
            100.0 * a.probes_ok as f64 / a.probes.max(1) as f64
        );
        for (checks, count) in &self.by_check {
            println!("  {count:>6} failed by {checks}");
        }
        self.print_coverage();
        println!("wall time {:.1}s on {} thread(s)", self.wall.as_secs_f64(), self.jobs);
    }
}

impl Summary {
    /// Adds one run's coverage: each point that fired in it counts one seed.
    pub(crate) fn add_coverage(&mut self, coverage: &sim::Coverage) {
        for (point, count) in coverage {
            if count.kind.is_coverage() && count.fired > 0 {
                *self.coverage.entry((*point).to_string()).or_default() += 1;
            }
        }
    }

    /// The coverage points no seed reached.
    pub(crate) fn never_reached(&self) -> Vec<&str> {
        self.coverage
            .iter()
            .filter(|(_, seeds)| **seeds == 0)
            .map(|(point, _)| point.as_str())
            .collect()
    }

    fn print_coverage(&self) {
        if self.coverage.is_empty() {
            return;
        }
        let never = self.never_reached();
        println!(
            "coverage: {} of {} points reached",
            self.coverage.len() - never.len(),
            self.coverage.len()
        );
        for point in &never {
            println!("  never reached: {point}");
        }
        let mut rarest: Vec<(&String, &u64)> =
            self.coverage.iter().filter(|(_, seeds)| **seeds > 0).collect();
        rarest.sort_by_key(|(point, seeds)| (**seeds, (*point).clone()));
        for (point, seeds) in rarest.iter().take(3) {
            println!("  rarest: {point} ({seeds} seed(s))");
        }
    }
}

impl Failure {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "type": "failure",
            "seed": self.seed,
            "record": self.record,
            "verdict": self.verdict,
            "checks": self.checks,
            "message": self.message,
            "replay": crate::cli::replay_command_text(&self.record),
        })
    }

    pub(crate) fn from_json(value: &Value) -> Result<Failure, String> {
        Ok(Failure {
            seed: whole(value, "seed")?,
            record: text(value, "record")?,
            verdict: text(value, "verdict")?,
            checks: text(value, "checks")?,
            message: text(value, "message")?,
        })
    }
}

fn text(value: &Value, name: &str) -> Result<String, String> {
    value[name].as_str().map(str::to_string).ok_or_else(|| format!("no text field {name:?}"))
}

fn whole(value: &Value, name: &str) -> Result<u64, String> {
    value[name].as_u64().ok_or_else(|| format!("no whole-number field {name:?}"))
}

/// Writes a JUnit XML report: one test case per seed run, failures with their verdict
/// and replay command.
///
/// # Errors
///
/// When the file cannot be written.
pub(crate) fn write_junit(
    path: &Path,
    summary: &Summary,
    failures: &[Failure],
    seeds: &[u64],
) -> Result<(), String> {
    let name = format!("cachesim sweep {}", summary.profile);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" time=\"{:.3}\">",
        escape(&name),
        seeds.len(),
        failures.len(),
        summary.wall.as_secs_f64()
    );
    let failed: BTreeMap<u64, &Failure> = failures.iter().map(|f| (f.seed, f)).collect();
    for seed in seeds {
        let case = format!("{} {seed}", summary.profile);
        match failed.get(seed) {
            None => {
                let _ = writeln!(
                    xml,
                    "  <testcase classname=\"{}\" name=\"{}\"/>",
                    escape(&name),
                    escape(&case)
                );
            }
            Some(failure) => {
                let _ = writeln!(
                    xml,
                    "  <testcase classname=\"{}\" name=\"{}\">",
                    escape(&name),
                    escape(&case)
                );
                let _ = writeln!(
                    xml,
                    "    <failure message=\"{}\" type=\"{}\">{}\nreplay: {}</failure>",
                    escape(&failure.checks),
                    escape(&failure.verdict),
                    escape(&failure.message),
                    escape(&crate::cli::replay_command_text(&failure.record))
                );
                let _ = writeln!(xml, "  </testcase>");
            }
        }
    }
    xml.push_str("</testsuite>\n");
    std::fs::write(path, xml).map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
