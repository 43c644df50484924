#!/usr/bin/env bash
# Runs the page map benchmarks (criterion: find+put, hot slot, insert; then
# metadata bytes per page) and prints the ratio table that RESULTS.md reports.
#   scripts/bench.sh            everything (~7 min on 2 cores)
#   scripts/bench.sh FILTER     only criterion benchmarks matching FILTER
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-bench}"

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "pagemap at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- pagemap || echo ' (pagemap has uncommitted changes)')"
cargo build --release -p benches --benches --bins
if [ $# -eq 0 ]; then
    # Stale results of renamed benchmarks would end up in the table.
    rm -rf "$CARGO_TARGET_DIR/criterion"
fi
cargo bench -p benches --bench pagemap -- "$@"
echo "load after criterion: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ $# -eq 0 ]; then
    echo
    "$CARGO_TARGET_DIR/release/memory" 100000
    echo
    "$CARGO_TARGET_DIR/release/memory" 1048576
fi
echo
python3 benches/ratios.py "$CARGO_TARGET_DIR/criterion"
if [ $# -eq 0 ]; then
    echo
    # Same comparisons, round-robin: less sensitive to bursts of outside load.
    "$CARGO_TARGET_DIR/release/interleaved" 9
    echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
