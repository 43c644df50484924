//! Stable replay of the `vmr_ops` seeds: every checked-in seed runs through
//! the differential harness (any divergence from the model panics), and
//! together they must exercise every op, every error the model predicts and
//! the frame-exhaustion paths.
//!
//! Seeds named `bug_*` reproduce known bugs of `vmr` (see
//! `vmr_run::KNOWN_BUGS`): `replay_all_seeds` runs them like the fuzzer does
//! (stepping around the known bugs), and `known_bugs_reproduce` runs them
//! strictly and fails, naming each, while the bug is there. When a fix lands,
//! that test fails the other way round: rename the seed to `fixed_*` and
//! drop the bug from `KNOWN_BUGS`.

use std::panic;

use pagemap_fuzz_harness::vmr_ops::VmrInput;
use pagemap_fuzz_harness::{corpus, vmr_run, Stats};

fn seeds() -> Vec<(String, Vec<u8>)> {
    corpus::seeds("vmr_ops")
}

#[test]
fn replay_all_seeds() {
    let seeds = seeds();
    assert!(
        seeds.len() >= 16,
        "expected at least 16 seeds, found {}",
        seeds.len()
    );
    let mut total = Stats::default();
    for (name, data) in &seeds {
        eprintln!("replaying vmr_ops/{name}");
        total.merge(&vmr_run::run(data));
    }
    let must = [
        // every op
        "Mmap",
        "Munmap",
        "Mprotect",
        "Madvise",
        "Fork",
        "Drop",
        "New",
        "Read",
        "Write",
        "FreeUnused",
        "Writeback",
        "Sync",
        "FailReads",
        "FailWrites",
        "FlushTlb",
        "Check",
        // every outcome the model predicts
        "mmap.ok",
        "mmap.populate",
        "munmap.ok",
        "mprotect.ok",
        "madvise.ok",
        "fork.ok",
        "drop.space",
        "read.ok",
        "write.ok",
        "write.cow",
        "read.cross_page",
        "write.cross_page",
        "err.Misaligned",
        "err.ZeroLength",
        "err.Overflow",
        "err.OutOfRange",
        "err.Overlap",
        "err.NoMapping",
        "err.NoSpace",
        "err.InvalidFlags",
        "err.ForeignPool",
        "err.OutOfMemory",
        "err.Populate.read_error",
        "err.Populate.pool_exhausted",
        "err.Populate.oom",
        "fault.NoMapping",
        "fault.Protection.read",
        "fault.Protection.write",
        "fault.Io.read_error",
        "fault.Io.pool_exhausted",
        "fault.OutOfMemory",
        "free_unused.freed",
        "free_unused.written",
        "free_unused.mapped",
        "free_unused.write_error",
        "writeback.written",
        "writeback.write_error",
    ];
    let missing: Vec<_> = must.iter().filter(|m| !total.has(m)).collect();
    assert!(
        missing.is_empty(),
        "seeds never exercise {missing:?}; got {:?}",
        total.0
    );
}

#[test]
fn known_bugs_reproduce() {
    let mut reproduced = Vec::new();
    let mut fixed = Vec::new();
    for (name, data) in seeds().iter().filter(|(n, _)| n.starts_with("bug_")) {
        let hook = panic::take_hook();
        panic::set_hook(Box::new(|_| {}));
        let r = panic::catch_unwind(|| vmr_run::run_strict(data));
        panic::set_hook(hook);
        match r {
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let first = msg.lines().take(3).collect::<Vec<_>>().join("\n    ");
                reproduced.push(format!("vmr_ops/{name}:\n    {first}"));
            }
            Ok(_) => fixed.push(name.clone()),
        }
    }
    assert!(
        fixed.is_empty(),
        "known-bug seeds no longer diverge (fixed? rename them fixed_* and update KNOWN_BUGS): {fixed:?}"
    );
    assert!(
        reproduced.is_empty(),
        "KNOWN VMR BUGS REPRODUCED ({}; see vmr_run::KNOWN_BUGS and fuzz/README.md):\n{}",
        reproduced.len(),
        reproduced.join("\n")
    );
}

#[test]
fn encoding_round_trips() {
    for (name, data) in seeds() {
        let input = VmrInput::decode(&data);
        assert_eq!(VmrInput::decode(&input.encode()), input, "{name}");
    }
}

#[test]
fn garbage_never_panics_the_harness() {
    for data in corpus::garbage(0x2545_f491_4f6c_dd1d, 300, |len| len * 2) {
        vmr_run::run(&data);
    }
}
