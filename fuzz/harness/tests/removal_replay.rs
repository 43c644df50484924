//! Stable replay of the `removal_interleaved` and `removal` seeds through
//! the same drivers the fuzz targets run (any lost write, stale
//! translation, leaked frame or inconsistent count panics).
//!
//! The interleaved seeds are deterministic, so together they must cover
//! the paths issue 4 asks for: a page whose removal a lookup aborted, one
//! a fault between Revoked and Reaped aborted, one a copy-on-write fault
//! aborted; a dirty PTE harvested by the reap and written back; a write
//! error that keeps the page dirty; msync, munmap and a teardown during a
//! removal. The threaded seeds are replayed a few times each (their
//! interleavings vary).
//!
//! Seeds named `bug_*` reproduce known bugs (see `KNOWN_BUGS` in
//! `removal.rs` and `removal_interleaved.rs`): `replay_*` run them as the
//! fuzzer does, `known_bugs_reproduce` runs them strictly and fails, naming
//! each, while the bug is there; once fixed, rename the seed `fixed_*`.

use std::panic;

use pagemap_fuzz_harness::corpus::seeds;
use pagemap_fuzz_harness::removal_interleaved::Input;
use pagemap_fuzz_harness::{corpus, removal, removal_interleaved, Stats};

fn missing(total: &Stats, must: &[&str]) -> Vec<String> {
    must.iter()
        .filter(|m| !total.has(m))
        .map(|m| m.to_string())
        .collect()
}

#[test]
fn replay_interleaved_seeds() {
    let seeds = seeds("removal_interleaved");
    assert!(
        seeds.len() >= 10,
        "expected at least 10 seeds, found {}",
        seeds.len()
    );
    let mut total = Stats::default();
    for (name, data) in &seeds {
        eprintln!("replaying removal_interleaved/{name}");
        total.merge(&removal_interleaved::run(data));
    }
    let must = [
        "finished",
        // every pass, and removals that removed, wrote, skipped
        "removal.begin",
        "pass.marked",
        "pass.revoked",
        "pass.shot_down",
        "pass.reaped",
        "pass.written_back",
        "pass.done",
        "remove.removed",
        "remove.written",
        "remove.referenced",
        "remove.pinned",
        "remove.raced",
        "remove.shootdowns",
        "remove.sync",
        "try_remove.busy",
        // what issue 4 asks for
        "aborted.by_lookup",
        "aborted.by_fault_revoked",
        "aborted.by_cow",
        "reap.harvested_dirty",
        "reap.harvested_written",
        "remove.write_error_kept_dirty",
        "msync.during_removal",
        "cow.during_removal",
        "munmap.during_removal",
        "respawn.during_removal",
        "cpu.write.during_removal",
        "ref.write.during_removal",
        "writeback.during_removal",
        // the other actors
        "cpu.read",
        "cpu.write.shared",
        "cpu.write.private",
        "cpu.write.cow",
        "cpu.unmapped",
        "cpu.exhausted",
        "ref.read",
        "ref.write",
        "find.hit",
        "find.miss",
        "load",
        "mmap.shared",
        "mmap.private",
        "mmap.locked",
        "mmap.overlap",
        "msync",
        "msync.written",
        "writeback",
        "sync",
        "free_unused",
        "invalidate",
        "invalidate.removed",
        "removal.finish",
    ];
    let missing = missing(&total, &must);
    assert!(
        missing.is_empty(),
        "interleaved seeds never exercise {missing:?}; got {:?}",
        total.0
    );
}

#[test]
fn replay_threaded_seeds() {
    let seeds = seeds("removal");
    assert!(
        seeds.len() >= 4,
        "expected at least 4 seeds, found {}",
        seeds.len()
    );
    let mut total = Stats::default();
    for round in 0..3 {
        for (name, data) in &seeds {
            eprintln!("replaying removal/{name} (round {round})");
            total.merge(&removal::run(data));
        }
    }
    // Only what every interleaving does.
    let must = [
        "finished",
        "cpu.write.shared",
        "cpu.write.private",
        "cpu.cow",
        "cpu.read.shared",
        "cpu.read.private",
        "ref.write",
        "ref.read",
        "munmap",
        "mmap",
        "msync",
        "remover.op",
        "remove.stepped",
        "fail_writes",
        "writeback",
        "sync",
    ];
    let missing = missing(&total, &must);
    assert!(
        missing.is_empty(),
        "threaded seeds never exercise {missing:?}; got {:?}",
        total.0
    );
}

#[test]
fn known_bugs_reproduce() {
    let mut reproduced = Vec::new();
    let mut fixed = Vec::new();
    for target in ["removal_interleaved", "removal"] {
        for (name, data) in seeds(target).iter().filter(|(n, _)| n.starts_with("bug_")) {
            let hook = panic::take_hook();
            panic::set_hook(Box::new(|_| {}));
            let r = panic::catch_unwind(|| {
                if target == "removal" {
                    // Threaded: a few tries, the race may need them.
                    for _ in 0..20 {
                        removal::run_strict(data);
                    }
                } else {
                    removal_interleaved::run_strict(data);
                }
            });
            panic::set_hook(hook);
            match r {
                Err(e) => {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    let first = msg.lines().take(3).collect::<Vec<_>>().join("\n    ");
                    reproduced.push(format!("{target}/{name}:\n    {first}"));
                }
                Ok(_) => fixed.push(format!("{target}/{name}")),
            }
        }
    }
    assert!(
        fixed.is_empty(),
        "known-bug seeds no longer fail (fixed? rename them fixed_* and update KNOWN_BUGS): {fixed:?}"
    );
    assert!(
        reproduced.is_empty(),
        "KNOWN REMOVAL BUGS REPRODUCED ({}; see KNOWN_BUGS in removal*.rs and fuzz/README.md):\n{}",
        reproduced.len(),
        reproduced.join("\n")
    );
}

#[test]
fn encoding_round_trips() {
    for (name, data) in seeds("removal_interleaved") {
        let input = Input::decode(&data);
        assert_eq!(Input::decode(&input.encode()), input, "{name}");
    }
}

#[test]
fn garbage_never_panics_the_harness() {
    let inputs = corpus::garbage(0x9e37_79b9_7f4a_7c15, 200, |len| len * 3);
    for (len, data) in inputs.iter().enumerate() {
        removal_interleaved::run(data);
        if len % 10 == 0 {
            removal::run(data);
        }
    }
}
