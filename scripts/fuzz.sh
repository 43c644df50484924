#!/usr/bin/env bash
# Differential fuzzing of pagemap and vmr (fuzz/, its own cargo-fuzz
# workspace): targets pagemap_ops, vmr_ops, removal_interleaved, file_ops,
# reclaim_ops and swap_ops
# (the threaded removal stress test runs with the replay tests).
#
#   scripts/fuzz.sh                  # replay tests, then 10 s per fuzz target
#                                    # (6 s for removal_interleaved: 56 s in all, six targets)
#   FUZZ_SECONDS=600 scripts/fuzz.sh # fuzz longer
#   FUZZ_SECONDS=0 scripts/fuzz.sh   # replay tests only
#
# Needs only stable Rust (rustup) and a C/C++ compiler (libFuzzer is C++;
# installed with apt-get when missing and possible). Idempotent: cargo-fuzz
# is installed only if `cargo fuzz` is missing. Runs with `-s none` (no
# sanitizer, which would need nightly) and with debug assertions on.
#
# A crash leaves its input in fuzz/artifacts/<target>/ and fails the script.
# A failing replay test (e.g. a `bug_*` seed reproducing a known, unfixed
# bug) fails the script too, but only after the fuzzing has run.
# To triage: `cargo fuzz run -s none -a <target> <that file>` re-runs it; copy
# it to fuzz/seeds/<target>/ to make it a stable regression test once fixed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-10}"
start=$(date +%s)

# Installs (C++ compiler, cargo-fuzz) live in one place.
scripts/setup.sh
cargo fuzz --version

echo "fuzz.sh: clippy on the fuzz workspace (warnings denied)"
rustup component add clippy >/dev/null 2>&1 || true
cargo clippy --manifest-path fuzz/Cargo.toml --workspace --all-targets -- -D warnings

echo "fuzz.sh: stable replay of the checked-in seeds, hand seeds, removal stress test"
replay_ok=1
cargo test --manifest-path fuzz/Cargo.toml --workspace || replay_ok=0

if [ "$FUZZ_SECONDS" -gt 0 ]; then
    for target in $(cargo fuzz list); do
        corpus="fuzz/corpus/$target"
        mkdir -p "$corpus"
        dirs=("$corpus")
        [ -d "fuzz/seeds/$target" ] && dirs+=("fuzz/seeds/$target")
        seconds="$FUZZ_SECONDS"
        extra=()
        case "$target" in
            removal*)
                # Two thirds of the time (10 s by default) and inputs up to
                # 1 KiB: each run syncs, removes and reloads the whole file
                # at the end, so it is slower per input.
                seconds=$(( FUZZ_SECONDS * 2 / 3 ))
                [ "$seconds" -gt 0 ] || seconds=1
                extra=(-max_len=1024)
                ;;
        esac
        echo "fuzz.sh: fuzzing $target for ${seconds}s"
        # New inputs go to the first (git-ignored) corpus dir only.
        cargo fuzz run -s none --debug-assertions "$target" "${dirs[@]}" -- \
            -max_total_time="$seconds" -timeout=20 -print_final_stats=1 "${extra[@]}"
    done
fi
echo "fuzz.sh: done in $(( $(date +%s) - start ))s"
if [ "$replay_ok" = 0 ]; then
    echo "fuzz.sh: the replay tests FAILED (see above; bug_* seeds are known bugs)" >&2
    exit 1
fi
