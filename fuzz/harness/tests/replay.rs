//! Stable replay: every checked-in seed runs through the differential
//! harness (any divergence from the model panics), and together the seeds
//! must exercise every op and every error path.

use pagemap_fuzz_harness::{corpus, run, Input, Stats};

fn seeds() -> Vec<(String, Vec<u8>)> {
    corpus::seeds("pagemap_ops")
}

#[test]
fn replay_all_seeds() {
    let seeds = seeds();
    assert!(
        seeds.len() >= 20,
        "expected at least 20 seeds, found {}",
        seeds.len()
    );
    let mut total = Stats::default();
    for (path, data) in &seeds {
        eprintln!("replaying {path}");
        let stats = run(data);
        total.merge(&stats);
    }
    let must = [
        // every op
        "Load",
        "LoadDrop",
        "Find",
        "LoadNowait",
        "Put",
        "Clone",
        "Write",
        "Read",
        "MarkDirty",
        "ClearDirty",
        "FailReads",
        "FailWrites",
        "StoreSet",
        "FreeUnused",
        "Writeback",
        "Cached",
        "Dirty",
        "NextPresent",
        "NextDirty",
        "Check",
        // every outcome and error path
        "find.hit",
        "load.pool_exhausted",
        "load.read_error",
        "load_nowait.would_block",
        "write.out_of_bounds",
        "read.out_of_bounds",
        "free_unused.write_error",
        "free_unused.referenced",
        "free_unused.written",
        "writeback.write_error",
        "writeback.written",
    ];
    let missing: Vec<_> = must.iter().filter(|m| !total.has(m)).collect();
    assert!(
        missing.is_empty(),
        "seeds never exercise {missing:?}; got {:?}",
        total.0
    );
}

#[test]
fn encoding_round_trips() {
    for (path, data) in seeds() {
        let input = Input::decode(&data);
        assert_eq!(Input::decode(&input.encode()), input, "{path}");
    }
}

#[test]
fn garbage_never_panics_the_decoder() {
    // Cheap pseudo-random inputs through the whole harness (no fuzzer needed).
    for data in corpus::garbage(0x9e37_79b9_7f4a_7c15, 200, |len| len * 3) {
        run(&data);
    }
}
