#!/usr/bin/env bash
# Mutation score of the cache, judged by the simulation sweep.
#
# cargo-mutants mutates cache/src (config: .cargo/mutants.toml) and, for each
# mutant, builds and runs only the oracle, tests/tests/mutation_oracle.rs: a
# sweep of ORACLE_SEEDS seeds over the profiles that fails on the first seed that
# does not pass. A mutant is caught when the oracle fails (a safety or liveness
# violation, or a crash), missed when every seed passes, timeout when the sweep
# outlasts the timeout, unviable when it does not build.
#
# Usage:
#   tests/scripts/mutation-score.sh [-o DIR] [FILE...] [-- CARGO_MUTANTS_ARGS...]
#   tests/scripts/mutation-score.sh --summary DIR      # table of an earlier run
#   tests/scripts/mutation-score.sh --list [FILE...]   # mutants per file, no run
#
#   FILE        files to mutate (default: the data path, below)
#   -o DIR      output directory; cargo-mutants writes DIR/mutants.out
#               (default target/mutation; a previous one moves to mutants.out.old)
#   -- ARGS     passed to cargo mutants, e.g. -- --shard 1/4, -- -F 'tick'
#
# Environment:
#   ORACLE_SEEDS      seeds per mutant (default: the oracle's own, SEEDS_DEFAULT)
#   JOBS              cargo-mutants jobs (default 1: two cores, shared)
#   TIMEOUT           test timeout per mutant in seconds (default: 5 x the
#                     baseline oracle run, at least 60)
#   SKIP_BASELINE=1   do not run the oracle on the unmutated tree first (then
#                     TIMEOUT must be given)
#
# cargo-mutants' own baseline is skipped (--baseline=skip): it runs the mutated
# package's tests only, and the cache has no mutation_oracle target. This script
# runs the oracle on the unmutated tree instead, and sets the timeout from it.
#
# Score = (caught + timeout) / (caught + missed + timeout); unviable mutants are
# left out.

set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

summarize() {
    python3 - "$1" <<'PY'
import collections, json, os, statistics, sys

out = sys.argv[1]
path = os.path.join(out, "outcomes.json")
with open(path) as f:
    lab = json.load(f)
kinds = {"CaughtMutant": "caught", "MissedMutant": "missed", "Timeout": "timeout",
         "Unviable": "unviable"}
rows = collections.OrderedDict()
missed, other = [], []
test_secs = collections.defaultdict(list)
build_secs = []
for outcome in lab["outcomes"]:
    scenario = outcome["scenario"]
    if not isinstance(scenario, dict) or "Mutant" not in scenario:
        continue  # the baseline
    mutant = scenario["Mutant"]
    kind = kinds.get(outcome["summary"])
    row = rows.setdefault(mutant["file"], collections.Counter())
    if kind is None:
        other.append((outcome["summary"], mutant["name"]))
        row["other"] += 1
        continue
    row[kind] += 1
    if kind == "missed":
        missed.append(mutant["name"])
    for phase in outcome["phase_results"]:
        if phase["phase"] == "Build" and kind != "unviable":
            build_secs.append(phase["duration"])
        elif phase["phase"] == "Test":
            test_secs[kind].append(phase["duration"])

def score(c):
    judged = c["caught"] + c["missed"] + c["timeout"]
    return "-" if judged == 0 else f"{100 * (c['caught'] + c['timeout']) / judged:.0f}%"

print("| file | mutants | caught | missed | timeout | unviable | score |")
print("|---|---:|---:|---:|---:|---:|---:|")
total = collections.Counter()
for file, c in sorted(rows.items()):
    total.update(c)
    n = sum(c.values())
    print(f"| {file} | {n} | {c['caught']} | {c['missed']} | {c['timeout']} | {c['unviable']} | {score(c)} |")
if len(rows) > 1:
    n = sum(total.values())
    print(f"| **total** | {n} | {total['caught']} | {total['missed']} | {total['timeout']} | {total['unviable']} | {score(total)} |")
if missed:
    print(f"\nMissed ({len(missed)}):\n")
    for name in missed:
        print(f"- `{name}`")
if other:
    print(f"\nOther outcomes ({len(other)}):\n")
    for summary, name in other:
        print(f"- {summary}: `{name}`")
def median(xs):
    return statistics.median(xs) if xs else 0.0
if build_secs:
    # The first build is the cold build of cargo-mutants' scratch copy of the tree.
    cold, warm = build_secs[0], build_secs[1:]
    print(f"\nTimes: cold build {cold:.0f}s (once a run); per mutant, build median "
          f"{median(warm):.1f}s, oracle median {median(test_secs['caught']):.1f}s when "
          f"caught, {median(test_secs['missed']):.1f}s when missed (the whole sweep).")
PY
}

if [[ ${1:-} == --summary ]]; then
    dir=${2:?usage: $0 --summary DIR}
    [[ -f $dir/outcomes.json ]] || dir=$dir/mutants.out
    summarize "$dir"
    exit 0
fi

list=0
if [[ ${1:-} == --list ]]; then
    list=1
    shift
fi

out=target/mutation
files=()
extra=()
while (($#)); do
    case $1 in
        -o) out=$2; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) files+=("$1"); shift ;;
    esac
done
if ((${#files[@]} == 0)); then
    for name in write_path read_path handoff hint_queue store version anti_entropy rebalance; do
        files+=("cache/src/$name.rs")
    done
fi
file_args=()
for file in "${files[@]}"; do
    [[ -f $file ]] || { echo "no such file: $file" >&2; exit 2; }
    file_args+=(--file "$file")
done

if ((list)); then
    total=0
    for file in "${files[@]}"; do
        count=$(cargo mutants --package cache --list --file "$file" "${extra[@]}" | wc -l)
        total=$((total + count))
        printf '%-28s %5d\n' "$file" "$count"
    done
    printf '%-28s %5d\n' total "$total"
    exit 0
fi

if [[ ${SKIP_BASELINE:-0} != 1 ]]; then
    echo "== baseline: the oracle on the unmutated tree" >&2
    cargo test -p cachesim --test mutation_oracle --no-run
    start=$(date +%s.%N)
    cargo test -p cachesim --test mutation_oracle -- --ignored --nocapture
    baseline=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$(date +%s.%N)")
    echo "== baseline oracle: ${baseline}s" >&2
    timeout=${TIMEOUT:-$(python3 -c "import math, sys; print(max(60, math.ceil(5 * float(sys.argv[1]))))" "$baseline")}
else
    timeout=${TIMEOUT:?SKIP_BASELINE=1 needs TIMEOUT}
fi

mkdir -p "$out"
echo "== cargo mutants on ${files[*]}: timeout ${timeout}s, jobs ${JOBS:-1}, ORACLE_SEEDS=${ORACLE_SEEDS:-default}" >&2
status=0
cargo mutants --package cache --baseline=skip --timeout "$timeout" --jobs "${JOBS:-1}" \
    --output "$out" "${file_args[@]}" "${extra[@]}" || status=$?
# 0: all caught; 2: some missed; 3: some timed out. Anything else is a failure.
case $status in
    0|2|3) ;;
    *) echo "cargo mutants failed with exit status $status" >&2; exit "$status" ;;
esac
echo
summarize "$out/mutants.out"
