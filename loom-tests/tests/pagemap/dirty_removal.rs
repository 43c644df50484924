//! Model 7: `free_unused` of a dirty, unreferenced page against a thread
//! that takes the page and writes to it.
//!
//! free_unused marks the page, then (pass 2) takes it itself to write it
//! back, which clears REMOVAL, and re-marks it afterwards if it is the only
//! holder. A writer that takes the page during that write-back, writes and
//! lets go before the re-mark must not have its update lost: after both,
//! either the store has the writer's bytes, or the page is still cached,
//! dirty, with them.

use loom_tests::bytes::{FIRST, OLD, SECOND};
use loom_tests::{
    check_quiescent, dirty, explore, gated_dirty, model, page_prefix, spawn_with, Bound, Fate,
    Fixture,
};

const IDX: u64 = 3;

#[test]
fn free_unused_dirty_vs_find_write() {
    explore(Bound::Env, || {
        let fx = Fixture::with_page(2, IDX, OLD);
        {
            let p = dirty(&fx.map, IDX, FIRST);
            assert!(p.is_dirty());
        }

        let writer = spawn_with(&fx.map, |map| match map.find(IDX).unwrap() {
            Some(p) => {
                p.write(0, &[SECOND; 8]).unwrap();
                true
            }
            None => false,
        });
        let r = fx.map.free_unused();
        assert!(r.errors.is_empty(), "{r:?}");
        let wrote = writer.join().unwrap();

        let latest = if wrote { SECOND } else { FIRST };
        let Fate {
            stored,
            cached,
            durable,
        } = fx.fate(IDX, latest);
        let dump = fx.map.dump();
        let in_cache = cached
            .as_ref()
            .is_some_and(|(c, dirty)| c == &vec![latest; 8] && (*dirty || durable));
        assert!(
            durable || in_cache,
            "lost update: writer wrote={wrote}, latest byte {latest:#x}, store has {stored:x?}, \
             cache has {cached:x?}, free_unused {r:?}\n{dump}"
        );
        if cached.is_none() {
            assert!(
                durable,
                "page removed before its latest contents were written back"
            );
        }
        check_quiescent(&fx);
        format!(
            "wrote={wrote} freed={} cached={}",
            r.freed,
            cached.is_some()
        )
    })
    .assert_seen(&[
        "wrote=false freed=1 cached=false",
        "wrote=true freed=0 cached=true",
    ]);
}

/// Model 7b: the same race forced into its window. The writer takes the
/// page while free_unused is writing it back, writes, and lets go before
/// the re-mark; the page must then be kept, dirty, with the new bytes.
#[test]
fn free_unused_dirty_write_in_writeback_window() {
    model(|| {
        let (pool, store, map) = gated_dirty(2, IDX, FIRST);
        let writer = spawn_with(&(map.clone(), store.clone()), |(map, store)| {
            store.wait_for_caller();
            let p = map
                .find(IDX)
                .unwrap()
                .expect("held by the remover, so cached");
            p.write(0, &[SECOND; 8]).unwrap();
            drop(p);
            store.open();
        });
        let r = map.free_unused();
        writer.join().unwrap();
        let stored = store.inner.page(IDX).map(|b| b[..8].to_vec());
        let cached = map
            .find(IDX)
            .unwrap()
            .map(|p| (page_prefix(&p, 8), p.is_dirty()));
        // The store reads the frame itself (no snapshot): it got the bytes
        // before or after the write (one 8-byte word: never a mix), and
        // either way the page stays, dirty, with the new bytes.
        assert!(
            stored == Some(vec![FIRST; 8]) || stored == Some(vec![SECOND; 8]),
            "the write-back stored {stored:x?}"
        );
        assert_eq!(
            cached,
            Some((vec![SECOND; 8], true)),
            "lost update: page removed after a write during its write-back ({r:?})\n{}",
            map.dump()
        );
        assert_eq!((r.freed, r.raced), (0, 1), "{r:?}");
        assert_eq!(map.dirty_indices(..), vec![IDX]);
        assert_eq!(pool.free_frames(), 1);
    });
}
