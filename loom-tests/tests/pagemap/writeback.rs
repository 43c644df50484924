//! Model 8: writeback against a concurrent `PageRef::write` (no lost update,
//! no lost dirty bit, DIRTY mark in line with the DIRTY flag).

use loom_tests::bytes::{FIRST, OLD, SECOND};
use loom_tests::{
    check_quiescent, dirty, explore, gated_dirty, model, page_prefix, spawn_with, Bound, Fixture,
};
use pagemap::flags;

const IDX: u64 = 2;

/// The page is dirty (FIRST over OLD in the store). One thread writes it
/// back while another takes it and writes SECOND. Afterwards either the
/// store has SECOND, or the page is still cached, DIRTY, marked dirty in the
/// tree, with SECOND; the store never goes back to OLD.
#[test]
fn writeback_vs_write() {
    explore(Bound::Env, || {
        let fx = Fixture::with_page(2, IDX, OLD);
        drop(dirty(&fx.map, IDX, FIRST));
        let flusher = spawn_with(&fx.map, |map| {
            let r = map.writeback(..);
            assert!(r.errors.is_empty());
            assert_eq!(r.written, 1, "the page was dirty when tagged: {r:?}");
        });
        {
            let p = fx.map.find(IDX).unwrap().expect("cached");
            p.write(0, &[SECOND; 8]).unwrap();
            // At every moment the new bytes are dirty, being written back
            // (WRITEBACK, or the page lock held between the snapshot and
            // setting WRITEBACK), or stored. Flags first, then the store.
            let f = p.flags();
            let in_flight = f & (flags::DIRTY | flags::WRITEBACK | flags::LOCKED) != 0;
            assert!(
                in_flight || fx.store.page(IDX).unwrap()[..8] == [SECOND; 8],
                "{f:#x}"
            );
        }
        flusher.join().unwrap();

        let stored = fx.store.page(IDX).expect("written back")[..8].to_vec();
        assert_ne!(stored, vec![OLD; 8]);
        let p = fx.map.find(IDX).unwrap().expect("still cached");
        assert_eq!(page_prefix(&p, 8), vec![SECOND; 8]);
        let dirty = p.is_dirty();
        assert!(
            stored == vec![SECOND; 8] || dirty,
            "lost update: store {stored:x?}, page clean\n{}",
            fx.map.dump()
        );
        assert_eq!(
            fx.map.dirty_indices(..),
            if dirty { vec![IDX] } else { vec![] }
        );
        drop(p);
        check_quiescent(&fx);
        // A second writeback always leaves store == cache and the page clean.
        fx.map.writeback(..);
        assert_eq!(fx.store.page(IDX).unwrap()[..8], [SECOND; 8]);
        assert!(fx.map.dirty_indices(..).is_empty());
        format!("stored_second={} dirty={dirty}", stored == vec![SECOND; 8])
    })
    // Write before the snapshot (stored, clean); write after it (old
    // snapshot stored, page dirty again).
    .assert_seen(&[
        "stored_second=true dirty=false",
        "stored_second=false dirty=true",
    ]);
}

/// Model 8b: the write lands while the writeback's store call is in
/// progress (forced): the page must come out dirty and marked.
#[test]
fn write_during_writeback_io() {
    model(|| {
        let (_pool, store, map) = gated_dirty(2, IDX, FIRST);
        let flusher = spawn_with(&map, |map| {
            let r = map.writeback(..);
            assert_eq!(r.written, 1);
        });
        store.wait_for_caller();
        {
            let p = map.find(IDX).unwrap().expect("cached");
            p.write(0, &[SECOND; 8]).unwrap();
            assert!(p.is_dirty());
        }
        store.open();
        flusher.join().unwrap();
        // The store reads the frame itself during its call (no snapshot),
        // so it may have either write; the page must be dirty regardless.
        let stored = store.inner.page(IDX).unwrap()[..8].to_vec();
        assert!(
            stored == [FIRST; 8] || stored == [SECOND; 8],
            "stored {stored:x?}"
        );
        let p = map.find(IDX).unwrap().unwrap();
        assert!(
            p.is_dirty(),
            "dirty bit lost by the writeback\n{}",
            map.dump()
        );
        assert_eq!(
            map.dirty_indices(..),
            vec![IDX],
            "DIRTY mark lost\n{}",
            map.dump()
        );
    });
}
