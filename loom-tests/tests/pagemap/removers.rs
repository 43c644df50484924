//! Removers against each other and against loaders and writeback:
//! * a failing load (its discard of the failed page) vs `free_unused`;
//! * `writeback` vs `free_unused` of the same dirty page;
//! * two `free_unused` at once (serialised: each page freed once).

use loom_tests::{
    assert_none_locked, check_quiescent, dirty, explore, is_free, model, page_prefix, spawn_with,
    Bound, Fixture,
};
use pagemap::Error;

/// A load whose read fails, while `free_unused` runs: the loader gets
/// `Error::Read`; the failed page is discarded by the loader, removed by the
/// remover, or left (unlocked, unheld) for a later removal. Never a LOCKED
/// or leaked frame; nr_pages and the pool agree.
#[test]
fn failed_load_vs_free_unused() {
    explore(Bound::Env, || {
        let fx = Fixture::new(2);
        fx.store.fail_reads(7, true);
        let loader = spawn_with(&fx.map, |map| match map.load(7) {
            Err(Error::Read { index: 7, .. }) => {}
            other => panic!("expected a read error, got {other:?}"),
        });
        let r = fx.map.free_unused();
        assert!(r.errors.is_empty());
        loader.join().unwrap();
        assert_none_locked(&fx.pool);
        let left = fx.map.nr_pages();
        check_quiescent(&fx);
        // Whatever was left is removable now.
        let again = fx.map.free_unused();
        assert_eq!(again.freed, left);
        assert_eq!(fx.pool.free_frames(), fx.capacity());
        format!("remover_freed={} left={left}", r.freed)
    })
    .assert_seen(&[
        "remover_freed=0 left=0",
        "remover_freed=1 left=0",
        "remover_freed=0 left=1",
    ]);
}

/// `writeback` and `free_unused` on one dirty page: the data reaches the
/// store exactly as written, the page is freed at most once and only clean,
/// and if it stays it is consistent (flag and mark agree).
#[test]
fn writeback_vs_free_unused_dirty() {
    let outcomes = explore(Bound::Env, || {
        let fx = Fixture::new(2);
        let frame = dirty(&fx.map, 4, 0xcd).frame();
        let flusher = spawn_with(&fx.map, |map| {
            let r = map.writeback(..);
            assert!(r.errors.is_empty());
        });
        let r = fx.map.free_unused();
        assert!(r.errors.is_empty());
        flusher.join().unwrap();
        assert_eq!(fx.store.page(4).expect("written back")[..8], [0xcd; 8]);
        let (_, writes) = fx.store.io_counts();
        // (Who reports the write is checked in `report_accounting`.)
        assert!((1..=2).contains(&writes));
        if r.freed == 1 {
            assert!(is_free(&fx.pool, frame));
            assert_eq!(fx.map.nr_pages(), 0);
        } else {
            let p = fx.map.find(4).unwrap().expect("kept");
            assert_eq!(page_prefix(&p, 8), vec![0xcd; 8]);
            assert!(!p.is_dirty());
        }
        check_quiescent(&fx);
        format!("freed={} writes={writes}", r.freed)
    });
    outcomes.assert_seen(&["freed=1 writes=1", "freed=0 writes=1"]);
    // Both writing it (the page redirtied in between cannot happen here:
    // nobody writes to it) is not expected: one finds it clean.
    assert!(
        !outcomes.seen().iter().any(|o| o.contains("writes=2")),
        "written twice"
    );
}

/// Two `free_unused` at once over two pages: each page is freed exactly
/// once (the remover lock serialises them), and the pool gets every frame back.
#[test]
fn two_removers() {
    model(|| {
        let fx = Fixture::new(2);
        fx.cache(0);
        fx.cache(5);
        let other = spawn_with(&fx.map, |map| map.free_unused().freed);
        let mine = fx.map.free_unused().freed;
        let theirs = other.join().unwrap();
        assert_eq!(mine + theirs, 2);
        assert_eq!(fx.map.nr_pages(), 0);
        assert_eq!(fx.pool.free_frames(), 2);
        assert_eq!(fx.map.memory().nodes, 0);
        check_quiescent(&fx);
    });
}
