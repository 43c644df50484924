#!/usr/bin/env bash
# Runs the page map benchmarks (criterion: find+put, hot slot, insert; then
# metadata bytes per page), the vmr benchmarks (criterion: minor fault vs the
# real kernel's, TLB hit vs page-table walk; then heap allocations per minor
# fault), the removal benchmarks (issue 4, criterion: removal with one
# shootdown per address space vs one per page per mapping, writeback vs raw
# pwrite, lookups while a remover runs; they print their own ratio tables),
# the file API benchmarks (issue 11, criterion: write_at + fsync vs pwrite +
# fdatasync, cold read_at vs pread, random cached read_at vs pread; then
# system calls per page) and prints the ratio table that RESULTS.md reports.
#   scripts/bench.sh            everything (~17 min on 2 cores)
#   scripts/bench.sh FILTER     only criterion benchmarks matching FILTER
#                               (e.g. minor_fault, tlb_read, find_put,
#                               remove_, writeback_, lookup_during_remove)
# The kernel minor-fault baseline and the writeback files use
# $VMR_BENCH_DIR (default: the temp dir); it should be on a disk file system
# (ext4 here), not tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-bench}"

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "kernel $(uname -r), fault file system: $(df --output=fstype "${VMR_BENCH_DIR:-${TMPDIR:-/tmp}}" | tail -1)"
echo "pagemap at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- pagemap || echo ' (pagemap has uncommitted changes)')$(git diff --quiet HEAD -- vmr || echo ' (vmr has uncommitted changes)')"
cargo build --release -p benches --benches --bins
if [ $# -eq 0 ]; then
    # Stale results of renamed benchmarks would end up in the table.
    rm -rf "$CARGO_TARGET_DIR/criterion"
fi
cargo bench -p benches --bench pagemap -- "$@"
cargo bench -p benches --bench vmr -- "$@"
cargo bench -p benches --bench removal -- "$@"
cargo bench -p benches --bench rmap -- "$@"
cargo bench -p benches --bench file_io -- "$@"
# Issue 12 (reclaim under pressure vs one global lock, moka, foyer, pread):
# prints its own table and writes benches/results/reclaim.md (~1 min).
cargo bench -p benches --bench reclaim -- "$@"
cargo bench -p benches --bench frame_alloc -- "$@"
# Issue 13 (fork of 64 MiB of written anonymous memory: copy-on-write
# sharing vs the eager copy, with and without the child writing every page):
# prints its own table and writes benches/results/fork.md (~30 s).
cargo bench -p benches --bench fork -- "$@"
# Issue 13 (demand paging: random touches over anonymous memory 4x the
# pool, 1 and 2 threads, concurrent paging vs one lock across all paging
# I/O, on a 50 us latency store and a real swap file in $VMR_BENCH_DIR):
# prints its own table and writes benches/results/paging.md (~1.5 min).
cargo bench -p benches --bench paging -- "$@"
echo "load after criterion: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ $# -eq 0 ]; then
    echo
    "$CARGO_TARGET_DIR/release/memory" 100000
    echo
    "$CARGO_TARGET_DIR/release/memory" 1048576
    echo
    "$CARGO_TARGET_DIR/release/fault_alloc" || echo "fault_alloc: FAILED (a minor fault allocated)"
    echo
    "$CARGO_TARGET_DIR/release/syscalls"
    echo
    # Hit ratios of the eviction policies vs LRU and Belady's optimum, and
    # the miss-ratio curves (benches/results/*.svg), about a minute.
    "$CARGO_TARGET_DIR/release/hit_ratio"
fi
echo
python3 benches/ratios.py "$CARGO_TARGET_DIR/criterion"
if [ $# -eq 0 ]; then
    echo
    # Same comparisons, round-robin: less sensitive to bursts of outside load.
    "$CARGO_TARGET_DIR/release/interleaved" 9
    echo
    "$CARGO_TARGET_DIR/release/fault_interleaved" 9
    echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
