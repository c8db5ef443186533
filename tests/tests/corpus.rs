//! Replays every line of `seeds.txt`: each seed that once found a bug must pass now.

use cachesim::{parse_corpus, run};

#[test]
fn every_corpus_seed_passes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../seeds.txt");
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
    let entries = parse_corpus(&text).unwrap_or_else(|error| panic!("{error}"));
    let mut failures = Vec::new();
    for entry in &entries {
        let report = run(&entry.record.config());
        if !report.verdict.is_pass() {
            failures.push(format!(
                "seeds.txt line {} ({}, {}): {}\n  replay: cargo run --release -- replay {} --trace",
                entry.line, entry.record, entry.note, report.verdict, entry.record
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus seeds failed:\n{}",
        failures.len(),
        entries.len(),
        failures.join("\n")
    );
}
