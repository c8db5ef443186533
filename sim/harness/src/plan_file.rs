//! A run written down: its record and its exact fault plan, as text that `replay
//! --plan FILE` runs again.
//!
//! ```text
//! # written by shrink
//! seed 42
//! profile swarm
//! fault-seconds 10
//! clients 2
//! episode 475 3283 duplicate 8/100
//! episode 1000 2000 partition n1,n2 | n3,n4,n5
//! episode 4183 11268 pause n2
//! latency-tail 3/100 40 250
//! ```
//!
//! Directives: `seed`, `profile`, `fault-seconds`, `quiet-seconds`, the system's
//! knobs (`NAME VALUE`), `episode START_MS DURATION_MS FAULT` and `latency-tail RATIO
//! MIN_MS MAX_MS`. A printed plan ([`Plan`]'s `Display`) is a valid tail of a file.

use std::fmt;
use std::fmt::Write as _;

use sim::rand::Ratio;

use crate::fault::{CustomFault, Episode, Fault, LinkTail, Plan, TAIL_LATENCY_MS_MAX, node_name};
use crate::record::{Record, Vocabulary, parse_seconds};
use crate::system::{System, profile_names};

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

/// Writes `record` and `plan` as a plan file, `comment` first.
pub fn write_plan_file<C: fmt::Display>(record: &Record, plan: &Plan<C>, comment: &str) -> String {
    let mut text = String::new();
    for line in comment.lines() {
        let _ = writeln!(text, "# {line}");
    }
    let _ = writeln!(text, "seed {}", record.seed);
    let _ = writeln!(text, "profile {}", record.profile);
    if let Some(seconds) = record.fault_seconds {
        let _ = writeln!(text, "fault-seconds {seconds}");
    }
    if let Some(seconds) = record.quiet_seconds {
        let _ = writeln!(text, "quiet-seconds {seconds}");
    }
    for (name, value) in &record.knobs {
        let _ = writeln!(text, "{name} {value}");
    }
    for episode in &plan.episodes {
        let (start, duration) = (episode.start_ms, episode.duration_ms);
        let _ = writeln!(text, "episode {start} {duration} {}", episode.fault);
    }
    if let Some(tail) = &plan.latency_tail {
        let (min, max) = (tail.latency_ms_min, tail.latency_ms_max);
        let _ = writeln!(text, "latency-tail {} {min} {max}", tail.ratio);
    }
    text
}

/// Parses a plan file into the record and the plan it describes, checked against
/// `system` (its profiles, knobs and node count).
///
/// # Errors
///
/// The first malformed line, with its number and what was expected.
pub fn parse_plan_file<S: System + ?Sized>(
    system: &S,
    text: &str,
) -> Result<(Record, Plan<S::Fault>), PlanFileError> {
    let (profiles, knobs) = (profile_names(system), system.knobs());
    let vocabulary = Vocabulary { profiles: &profiles, knobs: &knobs };
    let mut record = Record::new(profiles.first().copied().unwrap_or("none"), 0);
    let mut seed_seen = false;
    let mut episodes: Vec<(usize, &str)> = Vec::new();
    let mut plan = Plan::default();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let error = |problem: String| PlanFileError { line, problem };
        let (word, rest) = content.split_once(' ').map_or((content, ""), |(w, r)| (w, r.trim()));
        match word {
            "seed" => {
                record.seed = rest.parse().map_err(|_| {
                    error(format!("invalid seed {rest:?}: expected a whole number"))
                })?;
                seed_seen = true;
            }
            "profile" => record.profile = vocabulary.profile(rest).map_err(error)?,
            "fault-seconds" => {
                record.fault_seconds = Some(parse_seconds("fault-seconds", rest, 1).map_err(error)?)
            }
            "quiet-seconds" => {
                record.quiet_seconds = Some(parse_seconds("quiet-seconds", rest, 0).map_err(error)?)
            }
            "episode" => episodes.push((line, rest)),
            "latency-tail" => plan.latency_tail = Some(parse_tail(rest).map_err(error)?),
            knob if knobs.iter().any(|k| k.name == knob) => {
                record.set(knob, rest, vocabulary).map_err(error)?
            }
            other => {
                let names: Vec<&str> = knobs.iter().map(|knob| knob.name).collect();
                return Err(error(format!(
                    "unknown directive {other:?}: expected seed, profile, fault-seconds, quiet-seconds, {}episode or latency-tail",
                    names.iter().map(|name| format!("{name}, ")).collect::<String>()
                )));
            }
        }
    }
    if !seed_seen {
        let line = text.lines().count().max(1);
        return Err(PlanFileError { line, problem: "no `seed N` line".to_string() });
    }
    let record = crate::system::without_default_phases(system, record);
    // Episodes are read once the record is known: their nodes are checked against it.
    let node_count = system.node_count(&record);
    let mut numbered = Vec::new();
    for (line, rest) in episodes {
        let episode = parse_episode::<S::Fault>(rest, node_count)
            .map_err(|problem| PlanFileError { line, problem })?;
        numbered.push((episode, line));
    }
    // Checked in time order, each problem named by its episode's line.
    numbered.sort_by_key(|(episode, _)| episode.start_ms);
    let lines: Vec<usize> = numbered.iter().map(|(_, line)| *line).collect();
    plan.episodes = numbered.into_iter().map(|(episode, _)| episode).collect();
    let phase_ms = 1_000 * record.fault_seconds.unwrap_or(system.phase_seconds().0);
    check_plan(&plan, phase_ms).map_err(|(index, problem)| PlanFileError {
        line: index.map_or(0, |index| lines[index]),
        problem,
    })?;
    Ok((record, plan))
}

/// The largest clock offset a plan may set: a day, either way.
const CLOCK_OFFSET_MS_MAX: i64 = 86_400_000;
/// The largest latency a plan may set: a minute.
const LATENCY_MS_MAX: u64 = 60_000;
/// The smallest: a link's own least latency.
const LATENCY_MS_MIN: u64 = 1;
/// The largest clock drift a plan may set, in parts per million, either way (the
/// simulator's limit: 10 %).
const DRIFT_PPM_MAX: i32 = 100_000;

/// Episodes end within the fault phase, values stay in range, the system's own check
/// holds, and episodes of a global kind (link loss, duplication, latency, partitions)
/// do not overlap: undoing one would undo the other.
fn check_plan<C: CustomFault>(
    plan: &Plan<C>,
    phase_ms: u64,
) -> Result<(), (Option<usize>, String)> {
    for (index, episode) in plan.episodes.iter().enumerate() {
        check_episode(episode, phase_ms).map_err(|problem| (Some(index), problem))?;
    }
    C::check_plan(&plan.custom().collect::<Vec<_>>()).map_err(|problem| (None, problem))?;
    let kind = |fault: &Fault<C>| match fault {
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
fn check_episode<C: fmt::Display>(episode: &Episode<C>, phase_ms: u64) -> Result<(), String> {
    let end = episode.start_ms.checked_add(episode.duration_ms);
    if end.is_none_or(|end| end > phase_ms) {
        return Err(format!(
            "episode at {} ms ({}) ends after the fault phase of {phase_ms} ms",
            episode.start_ms, episode.fault
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
            "one-way partition from {} to itself: expected two different nodes",
            node_name(*from)
        )),
        _ => Ok(()),
    }
}

/// A partition's sides: each non-empty, no node on both.
fn check_sides(side_a: &[usize], side_b: &[usize]) -> Result<(), String> {
    if side_a.is_empty() || side_b.is_empty() {
        return Err("a partition needs a node on each side: `partition n1,n2 | n3,n4,n5`".into());
    }
    if let Some(both) = side_a.iter().find(|node| side_b.contains(node)) {
        return Err(format!(
            "{} is on both sides of a partition: each node goes on one side, as in `partition n1,n2 | n3,n4,n5`",
            node_name(*both)
        ));
    }
    Ok(())
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

fn parse_episode<C: CustomFault>(text: &str, node_count: usize) -> Result<Episode<C>, String> {
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

/// A node name (`n1` to `nN`) as its index.
///
/// # Errors
///
/// Not a node of the `node_count`.
pub fn parse_node(text: &str, node_count: usize) -> Result<usize, String> {
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

fn parse_fault<C: CustomFault>(
    kind: &str,
    args: &[&str],
    node_count: usize,
) -> Result<Fault<C>, String> {
    if let Some(custom) = C::parse(kind, args, node_count) {
        return custom.map(Fault::Custom);
    }
    let ratio = |text: &str| text.parse::<Ratio>().map_err(|e| e.to_string());
    let number = |text: &str| text.parse::<i64>().map_err(|_| format!("invalid number {text:?}"));
    let node = |text: &str| parse_node(text, node_count);
    Ok(match (kind, args) {
        ("partition", [a, "|", b]) => Fault::Partition {
            side_a: parse_nodes(a, node_count)?,
            side_b: parse_nodes(b, node_count)?,
        },
        ("partition-oneway", [from, to]) => {
            Fault::PartitionOneway { from: node(from)?, to: node(to)? }
        }
        ("loss", [r]) => Fault::Loss { ratio: ratio(r)? },
        ("duplicate", [r]) => Fault::Duplicate { ratio: ratio(r)? },
        ("latency", [ms]) => Fault::LatencySpike {
            latency_ms_max: u64::try_from(number(ms)?)
                .map_err(|_| "latency must be positive".to_string())?,
        },
        ("crash", [n]) => Fault::Crash { node: node(n)? },
        ("reboot", [n]) => Fault::Reboot { node: node(n)? },
        ("pause", [n]) => Fault::Pause { node: node(n)? },
        ("clock", [n, offset, drift]) => Fault::ClockSkew {
            node: node(n)?,
            offset_ms: number(offset)?,
            drift_ppm: i32::try_from(number(drift)?)
                .map_err(|_| format!("drift {drift} out of range"))?,
        },
        _ => {
            let custom = C::syntax();
            let custom = if custom.is_empty() { String::new() } else { format!("; {custom}") };
            return Err(format!(
                "invalid fault `{kind} {}`: expected partition A,B | C,D; partition-oneway FROM TO; loss N/D; duplicate N/D; latency MS; crash NODE; reboot NODE; pause NODE; clock NODE OFFSET_MS DRIFT_PPM{custom}",
                args.join(" ")
            ));
        }
    })
}
