//! Stable replay: every checked-in seed runs through the differential
//! harness (any divergence from the model panics), and together the seeds
//! must exercise every op and every error path.

use std::path::PathBuf;

use pagemap_fuzz_harness::{run, Input, Stats};

fn seeds() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../seeds/pagemap_ops");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    out
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
        eprintln!("replaying {}", path.display());
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
        assert_eq!(Input::decode(&input.encode()), input, "{}", path.display());
    }
}

#[test]
fn garbage_never_panics_the_decoder() {
    // Cheap pseudo-random inputs through the whole harness (no fuzzer needed).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..200usize {
        let data: Vec<u8> = (0..len * 3)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        run(&data);
    }
}
