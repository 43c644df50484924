//! Reports tell the truth about I/O: every write that `writeback` and
//! `free_unused` report was a real store write, and every store write is
//! reported by one of them (as written, or as a page the remover lost).
//!
//! Kept in its own test binary: when it fails, loom aborts the binary, and
//! the correctness models elsewhere still run.
#![cfg(pagemap_loom)]

use loom::thread;
use loom_tests::{model, Fixture};

/// `writeback` and `free_unused` on one dirty page (nobody writes it again,
/// so the store sees exactly one write).
#[test]
fn writeback_vs_free_unused_reports_match_store_writes() {
    model(|| {
        let fx = Fixture::new(2);
        {
            let p = fx.map.load(4).unwrap();
            p.write(0, &[0xcd; 8]).unwrap();
        }
        let flusher = {
            let map = fx.map.clone();
            thread::spawn(move || map.writeback(..).written)
        };
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
