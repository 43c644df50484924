//! Batched I/O: a readahead window (inserted LOADING, one store read with
//! no map lock held, then published) against a loader of one of its pages,
//! and a write-back extent against a write to one of its pages.

use loom_tests::bytes::{FIRST, OLD, SECOND};
use loom_tests::{
    assert_none_locked, check_quiescent, dirty, explore, page_prefix, spawn_with, Bound, Fixture,
};
use pagemap::{Error, StoreError};

const IDX: u64 = 4;

/// Readahead of IDX..IDX+2 vs a load of IDX + 1: the loader gets the page's
/// bytes whether it waited for the window's read or read the page itself
/// first (the window then stops before it); each page is read once.
#[test]
fn readahead_vs_load() {
    explore(Bound::Env, || {
        let fx = Fixture::with_page(3, IDX, 0x77);
        fx.store_page(IDX + 1, 0x78);
        let ahead = spawn_with(&fx.map, |map| map.readahead(IDX, 2).expect("readahead"));
        {
            let p = fx.map.load(IDX + 1).expect("load");
            assert_eq!(page_prefix(&p, 8), vec![0x78; 8]);
        }
        let n = ahead.join().unwrap();
        assert!(n == 1 || n == 2, "{n}");
        assert_eq!(fx.store.io_counts().0, 2, "each page read once");
        assert_eq!(fx.map.nr_pages(), 2);
        let p = fx.map.find(IDX).unwrap().expect("read ahead");
        assert_eq!(page_prefix(&p, 8), vec![0x77; 8]);
        drop(p);
        assert_none_locked(&fx.pool);
        check_quiescent(&fx);
        format!("ahead={n}")
    })
    .assert_seen(&["ahead=1", "ahead=2"]);
}

/// As above with page IDX + 1 unreadable (EIO): the loader gets EIO whether
/// it waited for the window's failed read or failed its own; no page stays
/// locked, and the map stays consistent.
#[test]
fn failed_readahead_vs_load() {
    explore(Bound::Env, || {
        let fx = Fixture::with_page(3, IDX, 0x77);
        fx.store.fail_reads(IDX + 1, true);
        let ahead = spawn_with(&fx.map, |map| map.readahead(IDX, 2));
        match fx.map.load(IDX + 1) {
            Err(Error::Read { index, source }) => {
                assert_eq!(index, IDX + 1);
                assert_eq!(source.code(), StoreError::EIO);
            }
            r => panic!("load of an unreadable page: {r:?}"),
        }
        let outcome = match ahead.join().unwrap() {
            Ok(n) => format!("ahead={n}"),
            Err(Error::Read { source, .. }) => {
                assert_eq!(source.code(), StoreError::EIO);
                "ahead=err".into()
            }
            Err(e) => panic!("{e}"),
        };
        assert_none_locked(&fx.pool);
        check_quiescent(&fx);
        outcome
    })
    .assert_seen(&["ahead=err", "ahead=1"]);
}

/// Two dirty pages written back as one extent while a writer writes page
/// IDX + 1 again: nothing is lost (the store has SECOND, or the page is
/// still dirty with it), and page IDX reaches the store.
#[test]
fn writeback_extent_vs_write() {
    explore(Bound::Env, || {
        let fx = Fixture::with_page(2, IDX, OLD);
        fx.store_page(IDX + 1, OLD);
        drop(dirty(&fx.map, IDX, FIRST));
        drop(dirty(&fx.map, IDX + 1, FIRST));
        let flusher = spawn_with(&fx.map, |map| {
            let r = map.writeback(..);
            assert!(r.errors.is_empty());
            assert_eq!(r.written, 2, "{r:?}");
        });
        {
            let p = fx.map.find(IDX + 1).unwrap().expect("cached");
            p.write(0, &[SECOND; 8]).unwrap();
        }
        flusher.join().unwrap();
        assert_eq!(fx.store.page(IDX).unwrap()[..8], [FIRST; 8]);
        let fate = fx.assert_not_lost(IDX + 1, SECOND, "extent vs write");
        check_quiescent(&fx);
        if fate.durable {
            "durable"
        } else {
            "dirty"
        }
    })
    .assert_seen(&["durable", "dirty"]);
}
