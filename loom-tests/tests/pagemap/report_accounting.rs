//! Reports tell the truth about I/O: every write that `writeback` and
//! `free_unused` report was a real store write, and every store write is
//! reported by one of them (as written, or as a page the remover lost).
//!
//! It had its own test binary so that its failure (loom aborts the binary)
//! could not hide the correctness models; in the merged `pagemap` binary a
//! failure here stops the models after it, as any model's does.

use loom_tests::{dirty, model, spawn_with, Fixture};

/// `writeback` and `free_unused` on one dirty page (nobody writes it again,
/// so the store sees exactly one write).
#[test]
fn writeback_vs_free_unused_reports_match_store_writes() {
    model(|| {
        let fx = Fixture::new(2);
        drop(dirty(&fx.map, 4, 0xcd));
        let flusher = spawn_with(&fx.map, |map| map.writeback(..).written);
        let r = fx.map.free_unused();
        let flushed = flusher.join().unwrap();
        let (_, writes) = fx.store.io_counts();
        assert_eq!(writes, 1, "one dirty page, nobody redirties it: one write");
        // A page the remover wrote but then lost (someone took it) is
        // reported as raced, not written.
        assert!(
            writes <= r.written + flushed + r.raced,
            "a store write nobody reported: writes={writes}, writeback.written={flushed}, {r:?}"
        );
        assert!(
            r.written + flushed <= writes,
            "more writes reported than made: writes={writes}, writeback.written={flushed}, {r:?}"
        );
    });
}
