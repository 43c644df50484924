#!/usr/bin/env bash
# Runs every test of the project: formatting, clippy (warnings denied), unit,
# integration and doc tests, the release stress test, the loom models, the
# fuzz replay tests plus a short fuzzing run, and a build of the benchmarks.
# Works on a fresh machine with rustup's stable toolchain and gcc: it installs
# what it needs (rustfmt, clippy, cargo-fuzz).
#
#   scripts/test.sh                 # everything
#   FUZZ_SECONDS=10 LOOM_MAX_PREEMPTIONS=2 scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "rustdoc (warnings denied: every public item is documented)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p pagemap -p vmr

step "unit, integration and doc tests"
cargo test --workspace

step "stress test in release"
cargo test --release -p pagemap --test stress

step "example workload"
cargo run --release -p vmr --example workload -- --ops 5000

step "loom models"
scripts/loom.sh

step "fuzz replay tests and a short fuzzing run"
scripts/fuzz.sh

step "benchmarks build"
cargo bench --workspace --no-run

echo
echo "all tests passed"
