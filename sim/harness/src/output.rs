//! What a sweep reports, for people (a table) and for machines (JSON lines, JUnit
//! XML, the failures file), and read back by `merge`.
//!
//! With `--json`, a sweep prints one JSON object per line: a `failure` per failing
//! run, in seed order, then one `summary`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::sweep::{Failure, Summary};

impl Summary {
    /// The summary as a JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "type": "summary",
            "profile": self.profile,
            "knobs": self.knobs,
            "range": [self.range.0, self.range.1],
            "shard": [self.shard.0, self.shard.1],
            "seeds": self.seeds,
            "failures": self.failures,
            "events": self.events,
            "virtual_ns": u64::try_from(self.virtual_ns).unwrap_or(u64::MAX),
            "stats": self.stats,
            "by_check": self.by_check,
            "coverage": self.coverage,
            "wall_seconds": self.wall.as_secs_f64(),
            "jobs": self.jobs,
        })
    }

    /// Reads a summary back from [`Summary::to_json`].
    ///
    /// # Errors
    ///
    /// A field missing or of the wrong type.
    pub fn from_json(value: &Value) -> Result<Summary, String> {
        let pair = |name: &str| -> Result<(u64, u64), String> {
            let items = value[name].as_array().filter(|items| items.len() == 2);
            let items = items.ok_or_else(|| format!("summary without a {name} pair"))?;
            match (items[0].as_u64(), items[1].as_u64()) {
                (Some(a), Some(b)) => Ok((a, b)),
                _ => Err(format!("summary {name} is not two whole numbers")),
            }
        };
        let counts = |name: &str| -> BTreeMap<String, u64> {
            value[name]
                .as_object()
                .map(|map| map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect())
                .unwrap_or_default()
        };
        Ok(Summary {
            profile: text(value, "profile")?,
            knobs: text(value, "knobs")?,
            range: pair("range")?,
            shard: pair("shard")?,
            seeds: whole(value, "seeds")?,
            failures: whole(value, "failures")?,
            events: whole(value, "events")?,
            virtual_ns: u128::from(whole(value, "virtual_ns")?),
            stats: counts("stats"),
            by_check: counts("by_check"),
            coverage: counts("coverage"),
            wall: Duration::from_secs_f64(value["wall_seconds"].as_f64().unwrap_or(0.0).max(0.0)),
            jobs: usize::try_from(whole(value, "jobs")?).unwrap_or(usize::MAX),
            ran: Vec::new(),
        })
    }

    /// The table people read, with the system's lines about its totals
    /// ([`crate::System::summary_lines`]) under the figures.
    pub fn table(&self, totals: &[String]) -> String {
        let mut out = String::new();
        let wall_s = self.wall.as_secs_f64().max(1e-9);
        let virtual_s = self.virtual_ns as f64 / 1e9;
        let _ = writeln!(
            out,
            "{:<10} {:>7} {:>8} {:>12} {:>10} {:>14} {:>12}",
            "profile", "seeds", "failures", "events", "seeds/s", "events/s", "virt s/s"
        );
        let _ = writeln!(
            out,
            "{:<10} {:>7} {:>8} {:>12} {:>10.1} {:>14.0} {:>12.0}",
            self.profile,
            self.seeds,
            self.failures,
            self.events,
            self.seeds as f64 / wall_s,
            self.events as f64 / wall_s,
            virtual_s / wall_s
        );
        for line in totals {
            let _ = writeln!(out, "{line}");
        }
        for (checks, count) in &self.by_check {
            let _ = writeln!(out, "  {count:>6} failed by {checks}");
        }
        out.push_str(&self.coverage_table());
        let _ =
            writeln!(out, "wall time {:.1}s on {} thread(s)", self.wall.as_secs_f64(), self.jobs);
        out
    }

    /// The coverage lines: how many points were reached, those never reached, the
    /// rarest three (or a line saying there are no points).
    pub fn coverage_table(&self) -> String {
        let mut out = String::new();
        if self.coverage.is_empty() {
            out.push_str("coverage: no point declared or reached (mark the states a good run reaches with sim::sometimes or sim::reachable)\n");
            return out;
        }
        let never = self.never_reached();
        let reached = self.coverage.len() - never.len();
        let _ = writeln!(out, "coverage: {reached} of {} points reached", self.coverage.len());
        for point in &never {
            let _ = writeln!(out, "  never reached: {point}");
        }
        let mut rarest: Vec<(&String, &u64)> =
            self.coverage.iter().filter(|(_, seeds)| **seeds > 0).collect();
        rarest.sort_by_key(|(point, seeds)| (**seeds, (*point).clone()));
        for (point, seeds) in rarest.iter().take(3) {
            let _ = writeln!(out, "  rarest: {point} ({seeds} seed(s))");
        }
        out
    }
}

impl Failure {
    /// The failure as a JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "type": "failure",
            "seed": self.seed,
            "record": self.record,
            "verdict": self.verdict,
            "checks": self.checks,
            "message": self.message,
            "replay": self.replay,
        })
    }

    /// Reads a failure back from [`Failure::to_json`].
    ///
    /// # Errors
    ///
    /// A field missing or of the wrong type.
    pub fn from_json(value: &Value) -> Result<Failure, String> {
        Ok(Failure {
            seed: whole(value, "seed")?,
            record: text(value, "record")?,
            verdict: text(value, "verdict")?,
            checks: text(value, "checks")?,
            message: text(value, "message")?,
            replay: text(value, "replay")?,
        })
    }
}

fn text(value: &Value, name: &str) -> Result<String, String> {
    value[name].as_str().map(str::to_string).ok_or_else(|| format!("no text field {name:?}"))
}

fn whole(value: &Value, name: &str) -> Result<u64, String> {
    value[name].as_u64().ok_or_else(|| format!("no whole-number field {name:?}"))
}

/// Appends the failing runs' records (with `# checks`), in seed order, to `path`.
///
/// # Errors
///
/// When the file cannot be written.
pub fn append_failures(path: &Path, failed: &[Failure]) -> Result<(), String> {
    if failed.is_empty() {
        return Ok(());
    }
    let text: String =
        failed.iter().map(|failure| format!("{} # {}\n", failure.record, failure.checks)).collect();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|error| format!("cannot append the failures to {}: {error}", path.display()))
}

/// Writes a JUnit XML report: one test case per seed run, failures with their verdict
/// and replay command.
///
/// # Errors
///
/// When the file cannot be written.
pub fn write_junit(
    path: &Path,
    name: &str,
    summary: &Summary,
    failures: &[Failure],
    seeds: &[u64],
) -> Result<(), String> {
    let name = escape(&format!("{name} sweep {}", summary.profile));
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuite name=\"{name}\" tests=\"{}\" failures=\"{}\" time=\"{:.3}\">",
        seeds.len(),
        failures.len(),
        summary.wall.as_secs_f64()
    );
    let failed: BTreeMap<u64, &Failure> = failures.iter().map(|f| (f.seed, f)).collect();
    for seed in seeds {
        let case = escape(&format!("{} {seed}", summary.profile));
        let Some(failure) = failed.get(seed) else {
            let _ = writeln!(xml, "  <testcase classname=\"{name}\" name=\"{case}\"/>");
            continue;
        };
        let _ = writeln!(xml, "  <testcase classname=\"{name}\" name=\"{case}\">");
        let _ = writeln!(
            xml,
            "    <failure message=\"{}\" type=\"{}\">{}\nreplay: {}</failure>",
            escape(&failure.checks),
            escape(&failure.verdict),
            escape(&failure.message),
            escape(&failure.replay)
        );
        let _ = writeln!(xml, "  </testcase>");
    }
    xml.push_str("</testsuite>\n");
    std::fs::write(path, xml).map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Prints a line on stdout, as `println!` does, except that a closed stdout (`| head`)
/// ends the process quietly with the status a shell gives a process killed by
/// `SIGPIPE` (141), never a panic; any other write error ends it with status 2.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::say_line(format_args!($($arg)*)) };
}

/// What [`say!`] does.
// The command line reports to its user on stdout.
#[allow(clippy::print_stderr)]
pub fn say_line(line: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: cannot write to stdout: {error}");
        std::process::exit(2);
    }
}
