//! A run written down: seed, profile, workload size and the exact fault plan, as text
//! that `cachesim replay --plan FILE` runs again.
//!
//! ```text
//! # written by cachesim shrink
//! seed 42
//! profile swarm
//! clients 2
//! fault-seconds 10
//! quiet-seconds 40
//! mutant read-quorum-short
//! episode 475 3283 duplicate 8/100
//! episode 4183 11268 pause n2
//! episode 1000 2000 partition n1,n2 | n3,n4,n5
//! episode 6000 3000 join
//! episode 7000 4000 drain n4
//! latency-tail 3/100 40 250
//! ```
//!
//! The workload is the profile's ([`WorkloadConfig::for_profile`]), with `clients`
//! overriding its client count.

use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

use sim::rand::Ratio;

use crate::faults::{
    Episode, Fault, FaultPlan, JOINS_PER_RUN_MAX, LinkTail, Profile, TAIL_LATENCY_MS_MAX,
};
use crate::run::RunConfig;
use crate::workload::WorkloadConfig;

/// A malformed plan file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanFileError {
    /// The line number, from 1 (0: the plan as a whole).
    pub line: usize,
    /// What is wrong and what was expected.
    pub problem: String,
}

impl fmt::Display for PlanFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "plan file: {}", self.problem);
        }
        write!(f, "plan file line {}: {}", self.line, self.problem)
    }
}

impl std::error::Error for PlanFileError {}

fn node_text(node: usize) -> String {
    format!("n{}", node + 1)
}

/// A fault in plan-file syntax (`partition n1,n2 | n3`, `crash n2`, …).
pub(crate) fn fault_text(fault: &Fault) -> String {
    let list =
        |nodes: &[usize]| nodes.iter().map(|node| node_text(*node)).collect::<Vec<_>>().join(",");
    match fault {
        Fault::Partition { side_a, side_b } => {
            format!("partition {} | {}", list(side_a), list(side_b))
        }
        Fault::PartitionOneway { from, to } => {
            format!("partition-oneway {} {}", node_text(*from), node_text(*to))
        }
        Fault::Loss { ratio } => format!("loss {ratio}"),
        Fault::Duplicate { ratio } => format!("duplicate {ratio}"),
        Fault::LatencySpike { latency_ms_max } => format!("latency {latency_ms_max}"),
        Fault::Crash { node } => format!("crash {}", node_text(*node)),
        Fault::Pause { node } => format!("pause {}", node_text(*node)),
        Fault::ClockSkew { node, offset_ms, drift_ppm } => {
            format!("clock {} {offset_ms} {drift_ppm}", node_text(*node))
        }
        Fault::Join => "join".to_string(),
        Fault::Drain { node } => format!("drain {}", node_text(*node)),
    }
}

/// Writes `config` (with its plan) as a plan file.
pub fn write_plan_file(config: &RunConfig, plan: &FaultPlan, comment: &str) -> String {
    let mut text = String::new();
    for line in comment.lines() {
        let _ = writeln!(text, "# {line}");
    }
    let _ = writeln!(text, "seed {}", config.seed);
    let _ = writeln!(text, "profile {}", config.profile);
    let _ = writeln!(text, "clients {}", config.workload.clients);
    let _ = writeln!(text, "fault-seconds {}", config.fault_phase.as_secs());
    let _ = writeln!(text, "quiet-seconds {}", config.quiet.as_secs());
    if config.liveness != crate::run::Liveness::All {
        let _ = writeln!(text, "liveness {}", config.liveness);
    }
    if let Some(mutant) = config.mutant {
        let _ = writeln!(text, "mutant {mutant}");
    }
    for episode in &plan.episodes {
        let _ = writeln!(
            text,
            "episode {} {} {}",
            episode.start_ms,
            episode.duration_ms,
            fault_text(&episode.fault)
        );
    }
    if let Some(tail) = &plan.latency_tail {
        let (min, max) = (tail.latency_ms_min, tail.latency_ms_max);
        let _ = writeln!(text, "latency-tail {} {min} {max}", tail.ratio);
    }
    text
}

/// Parses a plan file into the run it describes.
///
/// # Errors
///
/// The first malformed line, with its number and what was expected.
pub fn parse_plan_file(text: &str) -> Result<RunConfig, PlanFileError> {
    let mut config = RunConfig::new(0, Profile::Swarm);
    let mut plan = FaultPlan::default();
    let mut seed_seen = false;
    let mut clients = None;
    let mut episode_lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let error = |problem: String| PlanFileError { line, problem };
        let (word, rest) = content.split_once(' ').map_or((content, ""), |(w, r)| (w, r.trim()));
        let number = |what: &str| {
            rest.parse::<u64>()
                .map_err(|_| error(format!("invalid {what} {rest:?}: expected a whole number")))
        };
        match word {
            "seed" => {
                config.seed = number("seed")?;
                seed_seen = true;
            }
            "clients" => clients = Some(parse_clients(number("client count")?).map_err(error)?),
            "episode" => {
                plan.episodes.push(parse_episode(rest, config.nodes).map_err(error)?);
                episode_lines.push(line);
            }
            "latency-tail" => plan.latency_tail = Some(parse_tail(rest).map_err(error)?),
            other => set_directive(&mut config, other, rest).map_err(error)?,
        }
    }
    if !seed_seen {
        return Err(PlanFileError {
            line: text.lines().count().max(1),
            problem: "no `seed N` line".to_string(),
        });
    }
    config.workload = WorkloadConfig::for_profile(config.profile);
    config.workload.clients = clients.unwrap_or(config.workload.clients);
    // Checked in time order, each problem named by its episode's line.
    let mut numbered: Vec<(Episode, usize)> = plan.episodes.drain(..).zip(episode_lines).collect();
    numbered.sort_by_key(|(episode, _)| episode.start_ms);
    let lines: Vec<usize> = numbered.iter().map(|(_, line)| *line).collect();
    plan.episodes = numbered.into_iter().map(|(episode, _)| episode).collect();
    check_plan(&plan, &config).map_err(|(index, problem)| PlanFileError {
        line: index.map_or(0, |index| lines[index]),
        problem,
    })?;
    config.plan = Some(plan);
    Ok(config)
}

/// A client count within `1..=CLIENTS_MAX`.
fn parse_clients(count: u64) -> Result<usize, String> {
    let max = crate::record::CLIENTS_MAX;
    usize::try_from(count)
        .ok()
        .filter(|count| (1..=max).contains(count))
        .ok_or_else(|| format!("clients {count} is out of range: expected 1 to {max}"))
}

/// The directives that set one knob of `config`: profile, phases, liveness, mutant.
fn set_directive(config: &mut RunConfig, word: &str, rest: &str) -> Result<(), String> {
    let number = |what: &str| {
        rest.parse::<u64>().map_err(|_| format!("invalid {what} {rest:?}: expected a whole number"))
    };
    match word {
        "profile" => {
            config.profile =
                rest.parse().map_err(|e: crate::faults::ParseProfileError| e.to_string())?;
        }
        "fault-seconds" => {
            let seconds = phase_seconds("fault-seconds", number("fault-seconds")?, 1)?;
            config.fault_phase = Duration::from_secs(seconds);
        }
        "quiet-seconds" => {
            let seconds = phase_seconds("quiet-seconds", number("quiet-seconds")?, 0)?;
            config.quiet = Duration::from_secs(seconds);
        }
        "liveness" => config.liveness = rest.parse()?,
        "mutant" => config.mutant = Some(rest.parse()?),
        other => {
            return Err(format!(
                "unknown directive {other:?}: expected seed, profile, clients, fault-seconds, quiet-seconds, liveness, mutant, episode or latency-tail"
            ));
        }
    }
    Ok(())
}

/// `seconds` if within `min..=PHASE_SECONDS_MAX`.
fn phase_seconds(what: &str, seconds: u64, min: u64) -> Result<u64, String> {
    let max = crate::record::PHASE_SECONDS_MAX;
    if !(min..=max).contains(&seconds) {
        return Err(format!("{what} {seconds} is out of range: expected {min} to {max}"));
    }
    Ok(seconds)
}

/// The largest clock offset a plan may set: a day, either way.
const CLOCK_OFFSET_MS_MAX: i64 = 86_400_000;
/// The largest latency a plan may set: a minute.
const LATENCY_MS_MAX: u64 = 60_000;
/// The smallest: a link's own least latency ([`sim::net::LATENCY_MIN_DEFAULT`]).
const LATENCY_MS_MIN: u64 = 1;
/// The largest clock drift a plan may set, in parts per million, either way (the
/// simulator's limit: 10 %).
const DRIFT_PPM_MAX: i32 = 100_000;

/// A partition's sides: each non-empty, no node on both.
fn check_sides(side_a: &[usize], side_b: &[usize]) -> Result<(), String> {
    if side_a.is_empty() || side_b.is_empty() {
        return Err("a partition needs a node on each side: `partition n1,n2 | n3,n4,n5`".into());
    }
    if let Some(both) = side_a.iter().find(|node| side_b.contains(node)) {
        return Err(format!(
            "n{} is on both sides of a partition: each node goes on one side, as in `partition n1,n2 | n3,n4,n5`",
            both + 1
        ));
    }
    Ok(())
}

/// Episodes end within the fault phase, values stay in range, and episodes of a
/// global kind (link loss, duplication, latency, partitions) do not overlap: undoing
/// one would undo the other.
fn check_plan(plan: &FaultPlan, config: &RunConfig) -> Result<(), (Option<usize>, String)> {
    let phase_ms = u64::try_from(config.fault_phase.as_millis()).unwrap_or(u64::MAX);
    for (index, episode) in plan.episodes.iter().enumerate() {
        check_episode(episode, phase_ms).map_err(|problem| (Some(index), problem))?;
    }
    if plan.join_count() > JOINS_PER_RUN_MAX {
        let problem =
            format!("{} join episodes: at most {JOINS_PER_RUN_MAX} per run", plan.join_count());
        return Err((None, problem));
    }
    let kind = |fault: &Fault| match fault {
        Fault::Partition { .. } | Fault::PartitionOneway { .. } => Some("partition"),
        Fault::Loss { .. } => Some("loss"),
        Fault::Duplicate { .. } => Some("duplicate"),
        Fault::LatencySpike { .. } => Some("latency"),
        _ => None,
    };
    for (index, episode) in plan.episodes.iter().enumerate() {
        let Some(this) = kind(&episode.fault) else { continue };
        let overlapping = plan.episodes[index + 1..].iter().position(|later| {
            kind(&later.fault) == Some(this) && later.start_ms < episode.end_ms()
        });
        if let Some(offset) = overlapping {
            let later = &plan.episodes[index + 1 + offset];
            let problem = format!(
                "{this} episodes at {} ms and {} ms overlap: episodes of one network kind must follow each other",
                episode.start_ms, later.start_ms
            );
            return Err((Some(index + 1 + offset), problem));
        }
    }
    Ok(())
}

/// One episode: it ends within the fault phase, and its values are in range.
fn check_episode(episode: &Episode, phase_ms: u64) -> Result<(), String> {
    let end = episode.start_ms.checked_add(episode.duration_ms);
    if end.is_none_or(|end| end > phase_ms) {
        return Err(format!(
            "episode at {} ms ({}) ends after the fault phase of {phase_ms} ms",
            episode.start_ms,
            fault_text(&episode.fault)
        ));
    }
    match &episode.fault {
        Fault::ClockSkew { offset_ms, .. } if offset_ms.abs() > CLOCK_OFFSET_MS_MAX => {
            Err(format!(
                "clock offset {offset_ms} ms is out of range: at most {CLOCK_OFFSET_MS_MAX} either way"
            ))
        }
        Fault::ClockSkew { drift_ppm, .. } if drift_ppm.abs() > DRIFT_PPM_MAX => Err(format!(
            "clock drift {drift_ppm} ppm is out of range: at most {DRIFT_PPM_MAX} either way"
        )),
        Fault::LatencySpike { latency_ms_max }
            if !(LATENCY_MS_MIN..=LATENCY_MS_MAX).contains(latency_ms_max) =>
        {
            Err(format!(
                "latency {latency_ms_max} ms is out of range: expected {LATENCY_MS_MIN} to {LATENCY_MS_MAX} (the slowest message of the spike; links take at least {LATENCY_MS_MIN} ms)"
            ))
        }
        Fault::Partition { side_a, side_b } => check_sides(side_a, side_b),
        Fault::PartitionOneway { from, to } if from == to => Err(format!(
            "one-way partition from n{} to itself: expected two different nodes",
            from + 1
        )),
        _ => Ok(()),
    }
}

fn parse_tail(text: &str) -> Result<LinkTail, String> {
    let expected =
        "expected `latency-tail RATIO MIN_MS MAX_MS`, for example `latency-tail 3/100 40 250`";
    let words: Vec<&str> = text.split_whitespace().collect();
    let [ratio, min, max] = &words[..] else {
        return Err(format!("invalid latency tail {text:?}: {expected}"));
    };
    let ratio = ratio.parse::<Ratio>().map_err(|e| format!("{e}: {expected}"))?;
    let min: u64 = min.parse().map_err(|_| format!("invalid latency {min:?}: {expected}"))?;
    let max: u64 = max.parse().map_err(|_| format!("invalid latency {max:?}: {expected}"))?;
    if min > max || max > TAIL_LATENCY_MS_MAX {
        return Err(format!(
            "latency tail {min}..{max} ms is out of range: expected MIN <= MAX <= {TAIL_LATENCY_MS_MAX}"
        ));
    }
    Ok(LinkTail { ratio, latency_ms_min: min, latency_ms_max: max })
}

fn parse_episode(text: &str, node_count: usize) -> Result<Episode, String> {
    let expected =
        "expected `episode START_MS DURATION_MS FAULT`, for example `episode 1000 2500 crash n3`";
    let words: Vec<&str> = text.split_whitespace().collect();
    let [start, duration, kind, args @ ..] = &words[..] else {
        return Err(format!("too few words: {expected}"));
    };
    let start_ms = start.parse().map_err(|_| format!("invalid start {start:?}: {expected}"))?;
    let duration_ms =
        duration.parse().map_err(|_| format!("invalid duration {duration:?}: {expected}"))?;
    let fault = parse_fault(kind, args, node_count)?;
    Ok(Episode { start_ms, duration_ms, fault })
}

fn parse_node(text: &str, node_count: usize) -> Result<usize, String> {
    let index: usize = text
        .strip_prefix('n')
        .and_then(|n| n.parse().ok())
        .filter(|n| (1..=node_count).contains(n))
        .ok_or_else(|| format!("invalid node {text:?}: expected n1 to n{node_count}"))?;
    Ok(index - 1)
}

fn parse_nodes(text: &str, node_count: usize) -> Result<Vec<usize>, String> {
    text.split(',').map(|node| parse_node(node.trim(), node_count)).collect()
}

fn parse_fault(kind: &str, args: &[&str], node_count: usize) -> Result<Fault, String> {
    let ratio = |text: &str| text.parse::<Ratio>().map_err(|e| e.to_string());
    let number = |text: &str| text.parse::<i64>().map_err(|_| format!("invalid number {text:?}"));
    Ok(match (kind, args) {
        ("partition", [a, "|", b]) => Fault::Partition {
            side_a: parse_nodes(a, node_count)?,
            side_b: parse_nodes(b, node_count)?,
        },
        ("partition-oneway", [from, to]) => Fault::PartitionOneway {
            from: parse_node(from, node_count)?,
            to: parse_node(to, node_count)?,
        },
        ("loss", [r]) => Fault::Loss { ratio: ratio(r)? },
        ("duplicate", [r]) => Fault::Duplicate { ratio: ratio(r)? },
        ("latency", [ms]) => Fault::LatencySpike {
            latency_ms_max: u64::try_from(number(ms)?)
                .map_err(|_| "latency must be positive".to_string())?,
        },
        ("crash", [node]) => Fault::Crash { node: parse_node(node, node_count)? },
        ("pause", [node]) => Fault::Pause { node: parse_node(node, node_count)? },
        ("join", []) => Fault::Join,
        ("drain", [node]) => Fault::Drain { node: parse_node(node, node_count)? },
        ("clock", [node, offset, drift]) => Fault::ClockSkew {
            node: parse_node(node, node_count)?,
            offset_ms: number(offset)?,
            drift_ppm: i32::try_from(number(drift)?)
                .map_err(|_| format!("drift {drift} out of range"))?,
        },
        _ => {
            return Err(format!(
                "invalid fault `{kind} {}`: expected partition A,B | C,D; partition-oneway FROM TO; loss N/D; duplicate N/D; latency MS; crash NODE; pause NODE; clock NODE OFFSET_MS DRIFT_PPM; join; drain NODE",
                args.join(" ")
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::rand::SimRng;

    #[test]
    fn plans_round_trip_through_text() {
        for seed in 0..50 {
            let mut config = RunConfig::new(seed, Profile::Swarm);
            let plan =
                FaultPlan::draw(Profile::Swarm, &mut SimRng::forked(seed, "faults"), 5, 20_000);
            config.workload.clients = 2;
            let text = write_plan_file(&config, &plan, "a test\nof comments");
            let parsed = parse_plan_file(&text).unwrap();
            assert_eq!(parsed.seed, seed);
            assert_eq!(parsed.workload.clients, 2);
            assert_eq!(parsed.plan.as_ref(), Some(&plan), "{text}");
        }
    }

    #[test]
    fn membership_plans_and_tails_round_trip() {
        for profile in [Profile::Membership, Profile::Keys, Profile::None] {
            for seed in 0..30 {
                let config = RunConfig::new(seed, profile);
                let plan = FaultPlan::draw(profile, &mut SimRng::forked(seed, "faults"), 5, 20_000);
                let text = write_plan_file(&config, &plan, "");
                let parsed = parse_plan_file(&text).unwrap();
                assert_eq!(parsed.plan.as_ref(), Some(&plan), "{text}");
                assert_eq!(parsed.profile, profile);
                let mut expected = WorkloadConfig::for_profile(profile);
                expected.clients = config.workload.clients;
                assert_eq!(parsed.workload, expected);
            }
        }
        let three_joins = "seed 1\nepisode 1 1 join\nepisode 2 1 join\nepisode 3 1 join\n";
        assert!(parse_plan_file(three_joins).unwrap_err().problem.contains("at most 2"));
        let error = parse_plan_file("seed 1\nlatency-tail 1/10 50 900\n").unwrap_err();
        assert!(error.problem.contains("out of range"), "{error}");
        let error = parse_plan_file("seed 1\nepisode 1 1 drain\n").unwrap_err();
        assert!(error.problem.contains("drain NODE"), "{error}");
    }

    #[test]
    fn a_printed_plan_is_a_plan_file() {
        for profile in [Profile::Swarm, Profile::Membership, Profile::Partitions] {
            for seed in 0..20 {
                let config = RunConfig::new(seed, profile);
                let mut rng = sim::rand::SimRng::forked(seed, "faults");
                let plan = FaultPlan::draw(profile, &mut rng, config.nodes, 20_000);
                let text = format!("seed {seed}\nprofile {profile}\n{plan}");
                let parsed = parse_plan_file(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
                assert_eq!(parsed.plan.as_ref(), Some(&plan), "{text}");
            }
        }
    }

    #[test]
    fn malformed_files_name_the_line_and_the_format() {
        let error = parse_plan_file("seed 1\nepisode 10 20 crash n9\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.problem.contains("expected n1 to n5"), "{error}");
        let error = parse_plan_file("seed 1\nepisode 10 20 meteor n1\n").unwrap_err();
        assert!(error.problem.contains("expected partition"), "{error}");
        let error = parse_plan_file("profile swarm\n").unwrap_err();
        assert!(error.problem.contains("no `seed N` line"), "{error}");
        let error =
            parse_plan_file("seed 1\nfault-seconds 10\nepisode 9000 5000 crash n1\n").unwrap_err();
        assert!(error.problem.contains("ends after the fault phase"), "{error}");
        let overlap = "seed 1\nepisode 100 5000 loss 1/10\nepisode 2000 1000 loss 1/5\n";
        assert!(parse_plan_file(overlap).unwrap_err().problem.contains("overlap"));
        let error =
            parse_plan_file("seed 1\nepisode 100 100 clock n1 99999999999 0\n").unwrap_err();
        assert!(error.problem.contains("out of range"), "{error}");
        let checks = [
            ("episode 100 100 partition n1,n2 | n2,n3", "n2 is on both sides"),
            ("episode 100 100 clock n1 0 99999999", "drift 99999999 ppm is out of range"),
            ("episode 100 100 latency 0", "latency 0 ms is out of range"),
            ("episode 100 100 partition-oneway n2 n2", "to itself"),
        ];
        for (episode, problem) in checks {
            let error = parse_plan_file(&format!("seed 1\n\n{episode}\n")).unwrap_err();
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
        ] {
            let error = parse_plan_file(&format!("seed 1\n{directive}\n")).unwrap_err();
            assert_eq!(error.line, 2, "{error}");
            assert!(error.problem.contains(problem), "{directive}: {error}");
        }
        let error = parse_plan_file("seed x\n").unwrap_err();
        assert!(error.to_string().contains("line 1: invalid seed \"x\""), "{error}");
    }
}
