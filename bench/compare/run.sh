#!/usr/bin/env bash
# Builds the one workload against both runtimes and prints CPU ms per seed, ns per
# delivered message, and the ratio. Usage: ./run.sh [SEEDS] (default 200).
set -euo pipefail
cd "$(dirname "$0")"
seeds="${1:-200}"
# madsim simulates only under --cfg madsim; the flag changes nothing in `sim`.
export RUSTFLAGS="--cfg madsim"
cargo build --release --locked --quiet
sim_line=$(./target/release/on-sim "$seeds")
madsim_line=$(./target/release/on-madsim "$seeds")
echo "$sim_line"
echo "$madsim_line"
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
awk -v s="$(field "$sim_line" cpu_ms_per_seed)" -v m="$(field "$madsim_line" cpu_ms_per_seed)" \
    -v sn="$(field "$sim_line" ns_per_message)" -v mn="$(field "$madsim_line" ns_per_message)" \
    'BEGIN { printf "madsim / sim: %.2fx CPU per seed, %.2fx per delivered message\n", m / s, mn / sn }'
