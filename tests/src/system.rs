//! The cache as the harness sees it: [`CacheSystem`], the `sim_harness::System` that
//! `cachesim`'s sweeps, replays and shrinks run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cache::Consistency;
use sim::Sim;
use sim_harness::{Capture, Knob, Record, Report, Run, System, Violation};

use crate::checker::Availability;
use crate::faults::{CacheFault, Profile};
use crate::knobs::Knobs;
use crate::record::{CLIENTS_MAX, KNOBS};
use crate::run::{CacheWorld, NODE_COUNT, build, drive, judge};
use crate::workload::WorkloadConfig;

/// Virtual time any run may reach: a bound that only a hung run meets.
const RUN_TIME_LIMIT: Duration = Duration::from_secs(3_600);

/// The distributed cache under test.
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheSystem;

/// What a cache run hands back besides its verdict (`Report::outcome`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheOutcome {
    /// The consistency levels drawn (read, write).
    pub consistency: (Consistency, Consistency),
    /// The cache options drawn.
    pub knobs: Knobs,
    /// Client operations issued.
    pub operations: u64,
    /// How they ended.
    pub availability: Availability,
}

impl CacheOutcome {
    /// The outcome of a cache run's report (none when the run never ran).
    pub fn of(report: &Report<CacheFault>) -> Option<&CacheOutcome> {
        report.outcome::<CacheOutcome>()
    }
}

/// The record of `seed` under `profile`, every knob at its default.
pub fn record(profile: Profile, seed: u64) -> Record {
    Record::new(profile.name(), seed)
}

/// Runs `record` on the cache.
pub fn run(record: &Record) -> Report<CacheFault> {
    sim_harness::run(&CacheSystem, record, None, Capture::default())
}

impl System for CacheSystem {
    type Fault = CacheFault;
    type World = CacheWorld;

    fn command(&self) -> String {
        "cargo run --release --".to_string()
    }

    fn profiles(&self) -> Vec<sim_harness::Profile<crate::faults::CacheKind>> {
        // Swarm first: the default.
        let mut profiles = vec![Profile::Swarm];
        profiles.extend(Profile::ALL.into_iter().filter(|profile| *profile != Profile::Swarm));
        profiles.into_iter().map(Profile::spec).collect()
    }

    fn knobs(&self) -> Vec<Knob> {
        KNOBS.to_vec()
    }

    fn node_count(&self, _: &Record) -> usize {
        NODE_COUNT
    }

    fn time_limit(&self) -> Duration {
        RUN_TIME_LIMIT
    }

    fn build(&self, sim: &mut Sim, run: &Run<CacheFault>) -> Result<CacheWorld, String> {
        build(sim, run)
    }

    fn drive(
        &self,
        sim: &mut Sim,
        world: &mut CacheWorld,
        run: &Run<CacheFault>,
    ) -> Result<(), String> {
        drive(sim, world, &run.plan)
    }

    fn check(&self, _: &mut Sim, world: &mut CacheWorld, run: &Run<CacheFault>) -> Vec<Violation> {
        judge(world, run)
    }

    fn stats(&self, world: &CacheWorld) -> Vec<(&'static str, u64)> {
        let history = world.history.borrow();
        let a = Availability::of(&history);
        vec![
            ("operations", history.ops.len() as u64),
            ("ok", a.ok),
            ("failed", a.failed),
            ("unknown", a.unknown),
            ("probes", a.probes),
            ("probes_ok", a.probes_ok),
        ]
    }

    fn summary_lines(&self, stats: &BTreeMap<String, u64>) -> Vec<String> {
        let stat = |name: &str| stats.get(name).copied().unwrap_or(0);
        let (ok, failed, unknown) = (stat("ok"), stat("failed"), stat("unknown"));
        let all = (ok + failed + unknown).max(1) as f64;
        let share = |count: u64| 100.0 * count as f64 / all;
        let (probes, probes_ok) = (stat("probes"), stat("probes_ok"));
        vec![
            format!(
                "operations: {} issued, {ok} ok ({:.1}%), {failed} failed ({:.1}%), {unknown} unknown ({:.1}%)",
                stat("operations"),
                share(ok),
                share(failed),
                share(unknown)
            ),
            format!(
                "probes after heal: {probes_ok} of {probes} ok ({:.1}%)",
                100.0 * probes_ok as f64 / probes.max(1) as f64
            ),
        ]
    }

    fn details(&self, world: &CacheWorld, _: &Run<CacheFault>) -> Vec<String> {
        let (read, write) = world.consistency;
        vec![
            format!("consistency: read {read}, write {write}"),
            format!("options: {}", world.knobs),
        ]
    }

    fn digest(&self, world: &CacheWorld) -> u64 {
        sim::fingerprint::digest(&*world.history.borrow())
    }

    fn outcome(&self, world: &CacheWorld, _: &Run<CacheFault>) -> Option<sim_harness::Outcome> {
        let history = world.history.borrow();
        Some(Arc::new(CacheOutcome {
            consistency: world.consistency,
            knobs: world.knobs.clone(),
            operations: history.ops.len() as u64,
            availability: Availability::of(&history),
        }))
    }

    fn coverage_points(&self) -> Vec<&'static str> {
        cache::COVERAGE_POINTS.to_vec()
    }

    fn shrink_knobs(&self, record: &Record) -> Vec<Record> {
        let profile: Profile = record.profile.parse().unwrap_or(Profile::Swarm);
        let clients = record
            .knob("clients")
            .and_then(|clients| clients.parse().ok())
            .unwrap_or(WorkloadConfig::for_profile(profile).clients);
        if clients <= 1 {
            return Vec::new();
        }
        let mut fewer = record.clone();
        let (profiles, knobs) = (sim_harness::profile_names(self), self.knobs());
        let vocabulary = sim_harness::Vocabulary { profiles: &profiles, knobs: &knobs };
        match fewer.set("clients", &(clients - 1).min(CLIENTS_MAX).to_string(), vocabulary) {
            Ok(()) => vec![fewer],
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use sim::rand::SimRng;
    use sim_harness::{parse_plan_file, write_plan_file};

    use super::*;
    use crate::faults::draw_plan;

    fn parse(text: &str) -> Result<(Record, crate::FaultPlan), sim_harness::PlanFileError> {
        parse_plan_file(&CacheSystem, text)
    }

    #[test]
    fn plans_of_every_profile_round_trip_through_plan_files() {
        for profile in Profile::ALL {
            for seed in 0..30 {
                let mut record = record(profile, seed);
                record.knobs.push(("clients", "2".to_string()));
                let plan = draw_plan(profile, &mut SimRng::forked(seed, "faults"), 5, 20_000);
                let text = write_plan_file(&record, &plan, "a test\nof comments");
                assert_eq!(parse(&text).unwrap(), (record.clone(), plan.clone()), "{text}");
                // A printed plan is a plan file's tail.
                let printed = format!("seed {seed}\nprofile {profile}\nclients 2\n{plan}");
                assert_eq!(parse(&printed).unwrap(), (record, plan), "{printed}");
            }
        }
    }

    #[test]
    fn malformed_plan_files_name_the_line_and_the_format() {
        let three_joins = "seed 1\nepisode 1 1 join\nepisode 2 1 join\nepisode 3 1 join\n";
        assert!(parse(three_joins).unwrap_err().problem.contains("at most 2"));
        let error = parse("seed 1\nlatency-tail 1/10 50 900\n").unwrap_err();
        assert!(error.problem.contains("out of range"), "{error}");
        let error = parse("seed 1\nepisode 1 1 drain\n").unwrap_err();
        assert!(error.problem.contains("drain NODE"), "{error}");
        let error = parse("seed 1\nepisode 10 20 crash n9\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.problem.contains("expected n1 to n5"), "{error}");
        let error = parse("seed 1\nepisode 10 20 meteor n1\n").unwrap_err();
        assert!(error.problem.contains("expected partition"), "{error}");
        assert!(error.problem.contains("join; drain NODE"), "{error}");
        assert!(parse("profile swarm\n").unwrap_err().problem.contains("no `seed N` line"));
        let error = parse("seed 1\nfault-seconds 10\nepisode 9000 5000 crash n1\n").unwrap_err();
        assert!(error.problem.contains("ends after the fault phase"), "{error}");
        let overlap = "seed 1\nepisode 100 5000 loss 1/10\nepisode 2000 1000 loss 1/5\n";
        assert!(parse(overlap).unwrap_err().problem.contains("overlap"));
        let error = parse("seed x\n").unwrap_err();
        assert!(error.to_string().contains("line 1: invalid seed \"x\""), "{error}");
    }

    #[test]
    fn each_bad_episode_or_directive_is_named_by_its_line() {
        let episodes = [
            ("episode 100 100 partition n1,n2 | n2,n3", "n2 is on both sides"),
            ("episode 100 100 clock n1 0 99999999", "drift 99999999 ppm is out of range"),
            ("episode 100 100 clock n1 99999999999 0", "offset 99999999999 ms is out of range"),
            ("episode 100 100 latency 0", "latency 0 ms is out of range"),
            ("episode 100 100 partition-oneway n2 n2", "to itself"),
        ];
        for (episode, problem) in episodes {
            let error = parse(&format!("seed 1\n\n{episode}\n")).unwrap_err();
            assert_eq!(error.line, 3, "{error}");
            assert!(error.problem.contains(problem), "{episode}: {error}");
        }
        for (directive, problem) in [
            ("clients 0", "expected 1 to 64"),
            ("clients 100000", "expected 1 to 64"),
            ("fault-seconds 0", "expected 1 to 600"),
            ("quiet-seconds 86400", "expected 0 to 600"),
            ("mutant nope", "unknown mutant"),
            ("liveness most", "expected all or majority"),
            ("speed 3", "unknown directive \"speed\""),
        ] {
            let error = parse(&format!("seed 1\n{directive}\n")).unwrap_err();
            assert_eq!(error.line, 2, "{error}");
            assert!(error.problem.contains(problem), "{directive}: {error}");
        }
    }

    #[test]
    fn shrinking_takes_away_one_client_at_a_time() {
        let fewer = CacheSystem.shrink_knobs(&record(Profile::Swarm, 1));
        assert_eq!(fewer.len(), 1);
        let clients: usize = fewer[0].knob("clients").unwrap().parse().unwrap();
        assert_eq!(clients + 1, WorkloadConfig::for_profile(Profile::Swarm).clients);
        let one = sim_harness::parse_record(&CacheSystem, "swarm 1 clients=1").unwrap();
        assert!(CacheSystem.shrink_knobs(&one).is_empty());
    }
}
