//! Stable replay of every checked-in seed (`fuzz/seeds/<target>/`) through
//! the same runner the fuzz target uses: any divergence from the model
//! panics, every seed must round-trip through its decoder, and together the
//! seeds of a target must exercise every op and every error path listed
//! here.
//!
//! Seeds named `bug_*` reproduce known bugs (`KNOWN_BUGS` of the runner):
//! the replay steps around them as the fuzzer does, `known_bugs_reproduce`
//! runs them strictly and fails, naming each, while the bug is there; once
//! fixed it fails the other way round: rename the seed `fixed_*`.

use pagemap_fuzz_harness::corpus::{self, target, TARGETS};

#[test]
fn replay_pagemap_ops() {
    target("pagemap_ops").replay_seeds(
        20,
        "Load LoadDrop Find LoadNowait Put Clone Write Read MarkDirty ClearDirty \
         FailReads FailWrites StoreSet FreeUnused Writeback Cached Dirty NextPresent \
         NextDirty Check find.hit load.pool_exhausted load.read_error \
         load_nowait.would_block write.out_of_bounds read.out_of_bounds \
         free_unused.write_error free_unused.referenced free_unused.written \
         writeback.write_error writeback.written",
    );
}

#[test]
fn replay_vmr_ops() {
    target("vmr_ops").replay_seeds(
        16,
        "Mmap Munmap Mprotect Madvise Fork Drop New Read Write FreeUnused Writeback \
         Sync FailReads FailWrites FlushTlb Check mmap.ok mmap.populate munmap.ok \
         mprotect.ok madvise.ok fork.ok drop.space read.ok write.ok write.cow \
         read.cross_page write.cross_page err.Misaligned err.ZeroLength err.Overflow \
         err.OutOfRange err.Overlap err.NoMapping err.NoSpace err.InvalidFlags \
         err.ForeignPool err.OutOfMemory err.Populate.read_error \
         err.Populate.pool_exhausted err.Populate.oom fault.NoMapping \
         fault.Protection.read fault.Protection.write fault.Io.read_error \
         fault.Io.pool_exhausted fault.OutOfMemory free_unused.freed \
         free_unused.written free_unused.mapped free_unused.write_error \
         writeback.written writeback.write_error",
    );
}

/// The paths issue 4 asks for: a removal aborted by a lookup, by a fault
/// between Revoked and Reaped, by a copy-on-write fault; a dirty PTE
/// harvested by the reap and written back; a write error that keeps the
/// page dirty; msync, munmap and a teardown during a removal.
#[test]
fn replay_removal_interleaved() {
    target("removal_interleaved").replay_seeds(
        10,
        "finished removal.begin pass.marked pass.revoked pass.shot_down pass.reaped \
         pass.written_back pass.done remove.removed remove.written remove.referenced \
         remove.pinned remove.raced remove.shootdowns remove.sync try_remove.busy \
         aborted.by_lookup aborted.by_fault_revoked aborted.by_cow reap.harvested_dirty \
         reap.harvested_written remove.write_error_kept_dirty msync.during_removal \
         cow.during_removal munmap.during_removal respawn.during_removal \
         cpu.write.during_removal ref.write.during_removal writeback.during_removal \
         cpu.read cpu.write.shared cpu.write.private cpu.write.cow cpu.unmapped \
         cpu.exhausted ref.read ref.write find.hit find.miss load mmap.shared \
         mmap.private mmap.locked mmap.overlap msync msync.written writeback sync \
         free_unused invalidate invalidate.removed removal.finish",
    );
}

#[test]
fn known_bugs_reproduce() {
    for t in &TARGETS {
        t.known_bugs_reproduce();
    }
}

#[test]
fn garbage_never_panics_the_harness() {
    // Cheap pseudo-random inputs through every runner (no fuzzer needed).
    for data in corpus::garbage(0x9e37_79b9_7f4a_7c15, 200, |len| len * 3) {
        for t in &TARGETS {
            (t.run)(&data);
        }
    }
}
