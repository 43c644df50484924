#!/usr/bin/env bash
# Runs the loom models of pagemap and vmr in release mode. They are linked
# into two test binaries, `pagemap` (loom-tests/tests/pagemap/) and `vmr`
# (loom-tests/tests/vmr/), one module per former model file, under its old
# name.
#
#   scripts/loom.sh                                  # whole suite, preemption bound 2
#   LOOM_MAX_PREEMPTIONS=3 scripts/loom.sh           # deeper (much slower)
#   scripts/loom.sh --test pagemap -- node_reclaim   # one module (extra args go to cargo test)
#   scripts/loom.sh --test vmr -- fork_snapshot      # (a filter is a substring of the test path)
#   scripts/loom.sh -- find_vs                       # filter by test name, both binaries
#
# Under `--cfg pagemap_loom` pagemap takes its atomics and locks from loom, the radix
# fan-out is 4, the slot refcount is 5 bits (MAX_REFS 7, MAX_HELD 15, a guard bit) and reclaimed radix nodes are
# poisoned instead of freed; `--cfg crossbeam_loom` puts crossbeam-epoch on
# loom too. The build uses its own target dir (the cfgs change every crate).
#
# Each model is also bounded in code (loom_tests::model sets the preemption
# bound when LOOM_MAX_PREEMPTIONS is unset), so `cargo test` run directly is
# bounded as well. LOOM_TIMING=1 prints executions, time and the outcomes
# each model explored. A failing model prints loom's assertion first; loom
# then aborts that test binary (a panic while tearing down the execution).
# With the models merged into two binaries, that hides the results of every
# model of the same binary that had not finished (the one running beside it
# and all after it): fix or filter out the first failure to see the rest.
# The other binary is still run (--no-fail-fast), and the script fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-$PWD/target-loom}"
# Debug assertions on (the owner-before-publish check, the lazy-MMU checks
# and the other debug_assert!s run in every execution), warnings denied.
export RUSTFLAGS="${RUSTFLAGS:-} --cfg pagemap_loom --cfg crossbeam_loom -C debug-assertions -D warnings"
export LOOM_TIMING="${LOOM_TIMING:-1}"
# Keep loom's own output (backtraces of every thread) readable on failure.
export RUST_BACKTRACE="${RUST_BACKTRACE:-0}"

start=$(date +%s)
echo "loom.sh: LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS, target $CARGO_TARGET_DIR, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
cargo test -p loom-tests --release --no-run
# The loom-only code (cfg(pagemap_loom) paths of pagemap and vmr, the models)
# gets clippy too.
cargo clippy -p pagemap -p vmr --release -- -D warnings
cargo clippy -p loom-tests --release --tests -- -D warnings
# The slot word's exhaustive transition test at the loom width (5-bit
# count: every word but for the frame field), which the normal build's
# tests can only sample.
cargo test -p pagemap --release --lib slot::transitions
built=$(date +%s)
status=0
cargo test -p loom-tests --release --no-fail-fast "$@" || status=$?
end=$(date +%s)
echo "loom.sh: build $((built - start)) s, models $((end - built)) s, total $((end - start)) s (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS)"
if [ "$status" -ne 0 ]; then
    echo "loom.sh: FAILED (exit $status)" >&2
fi
exit "$status"
