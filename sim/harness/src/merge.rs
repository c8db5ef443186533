//! `merge`: the `--json` outputs of the shards of one sweep, combined into one
//! summary and one failure list, after checking that the shards cover the sweep's
//! range exactly once.

// The command line reports to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use crate::cli::input_error;
use crate::sweep::{Failure, Summary};

#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// The shards' outputs (`sweep --json --shard K/N > shard-K.json`).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print JSON lines (as `sweep --json`) instead of the table.
    #[arg(long)]
    json: bool,
}

/// One shard's output.
struct Shard {
    file: PathBuf,
    summary: Summary,
    failures: Vec<Failure>,
}

fn read_shard(file: &PathBuf) -> Result<Shard, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|error| format!("cannot read {}: {error}", file.display()))?;
    let (mut summary, mut failures) = (None, Vec::new());
    for (index, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let at = || format!("{} line {}", file.display(), index + 1);
        let value: Value = serde_json::from_str(line)
            .map_err(|error| format!("{}: not a JSON line of `sweep --json` ({error})", at()))?;
        match value["type"].as_str() {
            Some("failure") => {
                failures.push(Failure::from_json(&value).map_err(|e| format!("{}: {e}", at()))?);
            }
            Some("summary") if summary.is_none() => {
                summary = Some(Summary::from_json(&value).map_err(|e| format!("{}: {e}", at()))?);
            }
            Some("summary") => return Err(format!("{}: a second summary", at())),
            _ => return Err(format!("{}: expected a failure or a summary object", at())),
        }
    }
    let summary = summary.ok_or_else(|| {
        format!("{} has no summary line: is it the whole output of `sweep --json`?", file.display())
    })?;
    Ok(Shard { file: file.clone(), summary, failures })
}

/// Checks that the shards are of one sweep (same profile, knobs and range) and cover
/// its seeds exactly once; returns the range.
fn check_cover(shards: &[Shard]) -> Result<(u64, u64), String> {
    let first = &shards[0].summary;
    let mut by_shard: BTreeMap<u64, &PathBuf> = BTreeMap::new();
    for shard in shards {
        let s = &shard.summary;
        let name = shard.file.display();
        if (&s.profile, &s.knobs, s.range) != (&first.profile, &first.knobs, first.range) {
            return Err(format!(
                "{name} is another sweep: profile {} knobs {:?} seeds {}..{}, against {} {:?} {}..{}",
                s.profile,
                s.knobs,
                s.range.0,
                s.range.1,
                first.profile,
                first.knobs,
                first.range.0,
                first.range.1
            ));
        }
        if s.shard.1 != first.shard.1 {
            return Err(format!(
                "{name} is shard {}/{}, the others of {}",
                s.shard.0, s.shard.1, first.shard.1
            ));
        }
        if let Some(other) = by_shard.insert(s.shard.0, &shard.file) {
            return Err(format!(
                "{name} and {} are both shard {}/{}",
                other.display(),
                s.shard.0,
                s.shard.1
            ));
        }
    }
    let count = first.shard.1;
    let missing: Vec<String> =
        (1..=count).filter(|k| !by_shard.contains_key(k)).map(|k| format!("{k}/{count}")).collect();
    if !missing.is_empty() {
        return Err(format!(
            "shard(s) {} missing: the merge would not cover the sweep",
            missing.join(", ")
        ));
    }
    Ok(first.range)
}

pub(crate) fn merge<S: crate::System>(system: &S, args: &MergeArgs) -> ExitCode {
    let shards: Result<Vec<Shard>, String> = args.files.iter().map(read_shard).collect();
    let shards = match shards {
        Ok(shards) => shards,
        Err(error) => return input_error(error),
    };
    let range = match check_cover(&shards) {
        Ok(range) => range,
        Err(error) => return input_error(error),
    };
    let mut merged = Summary {
        profile: shards[0].summary.profile.clone(),
        knobs: shards[0].summary.knobs.clone(),
        range,
        shard: (1, 1),
        ..Summary::default()
    };
    let mut failures = Vec::new();
    for shard in &shards {
        merged.absorb(&shard.summary);
        failures.extend(shard.failures.iter().cloned());
    }
    failures.sort_by_key(|failure| failure.seed);
    crate::commands::print_sweep(system, &merged, &failures, args.json);
    if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
