#!/usr/bin/env bash
# Runs every test of the project: formatting, clippy (warnings denied), the
# build of pagemap without std for a no_std target, unit,
# integration and doc tests, the release stress and soak tests, the loom models, the
# fuzz replay tests plus a short fuzzing run (the benchmarks are type-checked by
# clippy).
# Works on a fresh machine with rustup's stable toolchain and gcc: it installs
# what it needs (rustfmt, clippy, cargo-fuzz).
#
#   scripts/test.sh                 # everything
#   FUZZ_SECONDS=10 LOOM_MAX_PREEMPTIONS=2 scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

T0=$(date +%s)
# Each step says when it starts (seconds since the script began), so a slow
# step shows in the log.
step() { printf '\n==> [%ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

# Every test runner's output also goes to this log, for the closing count.
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
counted() { "$@" 2>&1 | tee -a "$LOG"; }

step "setup (installs what is missing: components, MSRV and nightly toolchains, cargo-fuzz)"
scripts/setup.sh
cargo --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "the libraries build with the workspace's rust-version"
msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -1)
if rustup run "$msrv" rustc --version >/dev/null 2>&1; then
    CARGO_TARGET_DIR="$PWD/target-msrv" cargo "+$msrv" check -p pagemap -p vmr
else
    echo "SKIPPED: Rust $msrv is not installed (scripts/setup.sh could not fetch it)"
fi

step "pagemap without std: build and clippy for a no_std target (x86_64-unknown-none)"
# A target with no std library, so any use of std, the crate's or a
# dependency's, fails to compile; counted as one test (a build has no
# runner line of its own).
nostd() {
    cargo build -p pagemap --no-default-features --target x86_64-unknown-none
    cargo clippy -p pagemap --no-default-features --target x86_64-unknown-none -- -D warnings
    echo "test result: ok. 1 passed; 0 failed; 0 ignored (pagemap no_std build and clippy)"
}
if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none; then
    counted nostd
else
    echo "SKIPPED: the x86_64-unknown-none target is not installed (scripts/setup.sh could not add it)"
fi

step "rustdoc (warnings denied: every public item is documented)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p pagemap -p vmr

step "unit, integration and doc tests"
counted cargo test --workspace

step "stress tests in release"
counted cargo test --release -p pagemap --test stress
counted cargo test --release -p vmr --test races
counted cargo test --release -p vmr --test break8 -- --test-threads 1

step "soak test (short; SOAK_SECONDS=600 for a real soak)"
SOAK_SECONDS="${SOAK_SECONDS:-15}" counted cargo test --release -p vmr --test soak -- --ignored --nocapture
SOAK_SECONDS="${SOAK_SECONDS:-5}" counted cargo test --release -p pagemap --test reclaim_soak

step "the main job (pagecache, shortened) and the examples"
cargo run --release -p pagecache-cli -- --duration 2s
cargo run --release -p pagecache-cli -- --anon --file-size 64M --duration 1s
cargo run --release -p vmr --example workload -- --ops 5000
cargo run --release -p pagemap --example log_store

step "miri on the tests of the unsafe code"
if cargo +nightly miri --version >/dev/null 2>&1; then
    counted scripts/miri.sh
else
    echo "SKIPPED: miri is not installed (scripts/setup.sh could not fetch nightly)"
fi

step "loom models"
counted scripts/loom.sh

step "fuzz replay tests and a short fuzzing run"
counted scripts/fuzz.sh

# The benchmarks are type-checked by the clippy step (--all-targets); a
# release build of them here cost about 90 s of CI time for no other check.

echo
echo "test.sh: $(( $(date +%s) - T0 )) s"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$LOG"
