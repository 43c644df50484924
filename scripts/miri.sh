#!/usr/bin/env bash
# Runs the tests that exercise the crates' `unsafe` code under miri (nightly
# only; scripts/setup.sh installs it): radix nodes (allocated zeroed, walked
# lock-free, unlinked and freed through the epoch), the page reference that
# outlives its lookup's guard, frame sources over raw memory (RegionFrames,
# the pool's words and a store's direct access), PrivateFrame's raw ids,
# and vmr's page-table nodes. Small configurations: about 2 minutes on 2 cores.
#
# MIRIFLAGS: Tree Borrows, because crossbeam-epoch is sound under Tree Borrows
# but not under Stacked Borrows (its own CI runs miri that way); leaks are
# ignored because the global epoch collector never runs the frees still
# deferred when the process exits; permissive provenance because
# crossbeam-epoch tags pointers with integer casts.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${MIRI_TARGET_DIR:-$PWD/target-miri}"
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-tree-borrows -Zmiri-ignore-leaks -Zmiri-permissive-provenance}"
start=$(date +%s)
cargo +nightly miri test -p pagemap --test unsafe_paths
# The crate's own unit tests of frames, slot words and the shootdown batch
# (not the store's: they use real files; not the reverse map's: no unsafe
# code, and minutes under miri). page_lock_wakes_waiter
# is skipped: it sleeps in parking_lot, whose futex call current miri rejects
# (an argument type in parking_lot_core's variadic syscall, not our code).
cargo +nightly miri test -p pagemap --lib -- frame:: slot:: shootdown:: --skip frame::policy \
    --skip page_lock_wakes_waiter
# The completion-based store's requests (raw frame memory handed to the
# store, completed inline: the threaded tests sleep in parking_lot too).
cargo +nightly miri test -p pagemap --test submit -- \
    a_failed_read_reaches_the_loader a_dropped_request_is_a_cancelled_error
# The kernel-style harness (tests/kernel.rs): frames over raw memory (a
# heap region under miri, an mmap natively) read and written by its CPUs
# through pointers; its single-threaded scenarios (the threaded ones and
# the mutants are ignored under miri). About 30 s.
cargo +nightly miri test -p pagemap --test kernel
cargo +nightly miri test -p vmr --lib -- pagetable::
echo "miri.sh: $(( $(date +%s) - start )) s"
