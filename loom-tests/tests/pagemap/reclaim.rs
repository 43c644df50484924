//! Reclaim on allocation (`FramePool::reclaim`, the eviction of victims an
//! eviction policy chose, through the removal passes over exactly those
//! pages) against what may happen to a victim meanwhile.
//!
//! * `eviction_vs_find`: the lookup wins and the page stays (intact while
//!   held), or the eviction wins and the lookup misses and reloads it, with
//!   exactly one more store read.
//! * `eviction_vs_fault`: a fault maps the victim while it is evicted:
//!   afterwards a present entry maps the page the map caches there, never a
//!   freed frame. Killed by R01 (the eviction's pass 1 snapshotting no
//!   mapping, so nothing revokes the entry).
//! * `dirty_eviction_vs_write`: a dirty victim is written back and evicted
//!   while a user writes it again: the new bytes are stored or still cached
//!   dirty. Killed by R02 (the eviction discarding dirty victims).
//! * `two_reclaimers`: two reclaims of a full pool at once: no frame freed
//!   twice, the accounting adds up.
//! * `reclaim_vs_map_drop`: a reclaim of the pool while one of its two maps
//!   is dropped: the drop frees that map's frames once, whoever drops last.

use loom::sync::atomic::Ordering;
use std::sync::Arc;

use crate::fault_iface::{entry, frame_of, mapped, PRESENT};
use loom_tests::{
    bytes, check_quiescent, dirty, explore, is_free, page_prefix, spawn_with, Bound, Fixture,
};
use pagemap::{MemStore, PageMap};

const IDX: u64 = 0;

#[test]
fn eviction_vs_find() {
    explore(Bound::Env, || {
        let (fx, frame) = Fixture::with_cached(2, IDX, bytes::OLD);
        let reads_before = fx.store.io_counts().0;
        let reclaimer = spawn_with(&fx.pool, |pool| pool.reclaim(1).freed);
        let seen = match fx.map.find(IDX).unwrap() {
            Some(page) => {
                assert_eq!(page.frame(), frame);
                assert!(!is_free(&fx.pool, frame), "a held page's frame is free");
                assert_eq!(page_prefix(&page, 8), vec![bytes::OLD; 8]);
                "hit"
            }
            None => {
                let page = fx.map.load(IDX).unwrap();
                assert_eq!(page_prefix(&page, 8), vec![bytes::OLD; 8], "reloaded");
                "miss"
            }
        };
        let freed = reclaimer.join().unwrap();
        let reloads = fx.store.io_counts().0 - reads_before;
        match seen {
            "miss" => assert_eq!((freed, reloads), (1, 1), "a miss reloads once"),
            _ => assert_eq!(reloads, 0, "a hit reads nothing"),
        }
        check_quiescent(&fx);
        format!("{seen} freed={freed}")
    })
    // The hit before the eviction's look (the page then referenced, kept
    // or taken on a later sweep), after it (kept), and the miss.
    .assert_seen(&["hit freed=0", "miss freed=1"]);
}

#[test]
fn eviction_vs_fault() {
    explore(Bound::Env, || {
        let (fx, table) = mapped(2);
        fx.store_page(IDX, bytes::OLD);
        fx.cache(IDX);
        let fault = spawn_with(&(fx.map.clone(), table.clone()), |(map, table)| {
            map.map_page(IDX, |page| {
                let e = entry(page.frame(), PRESENT);
                table.at(IDX).store(e, Ordering::SeqCst);
            })
            .is_ok()
        });
        let freed = fx.pool.reclaim(1).freed;
        let faulted = fault.join().unwrap();
        let e = table.at(IDX).load(Ordering::SeqCst);
        if e & PRESENT != 0 {
            let frame = frame_of(e).unwrap();
            assert!(
                !is_free(&fx.pool, frame),
                "a present entry maps a freed frame"
            );
            let cached = fx.map.find(IDX).unwrap().expect("a mapped page is cached");
            assert_eq!(cached.frame(), frame, "the entry maps another frame");
        }
        format!(
            "faulted={faulted} freed={freed} present={}",
            e & PRESENT != 0
        )
    })
    .assert_seen(&[
        "faulted=true freed=0 present=true",
        "faulted=true freed=1 present=false",
    ]);
}

#[test]
fn dirty_eviction_vs_write() {
    explore(Bound::Env, || {
        let fx = Fixture::with_page(2, IDX, bytes::OLD);
        drop(dirty(&fx.map, IDX, bytes::FIRST));
        let writer = spawn_with(&fx.map, |map| {
            let page = map.load(IDX).unwrap();
            page.write(0, &[bytes::SECOND; 8]).unwrap();
        });
        let r = fx.pool.reclaim(1);
        writer.join().unwrap();
        assert_eq!(r.write_errors, 0);
        fx.assert_not_lost(
            IDX,
            bytes::SECOND,
            "a write racing the eviction of its dirty page",
        );
        check_quiescent(&fx);
        format!("freed={} dirty={}", r.freed, r.dirty)
    })
    .assert_seen(&["freed=0 dirty=0", "freed=1 dirty=1"]);
}

#[test]
fn two_reclaimers() {
    explore(Bound::Env, || {
        let fx = Fixture::new(2);
        fx.store_page(0, bytes::OLD);
        fx.store_page(1, bytes::FIRST);
        fx.cache(0);
        fx.cache(1);
        let other = spawn_with(&fx.pool, |pool| pool.reclaim(1).freed);
        let mine = fx.pool.reclaim(1).freed;
        let theirs = other.join().unwrap();
        assert!(mine + theirs <= 2);
        assert_eq!(fx.pool.free_frames() as u64, mine + theirs);
        for i in fx.map.cached_indices(..) {
            let want = if i == 0 { bytes::OLD } else { bytes::FIRST };
            assert_eq!(
                page_prefix(&fx.map.find(i).unwrap().unwrap(), 8),
                vec![want; 8]
            );
        }
        check_quiescent(&fx);
        format!("freed={}", mine + theirs)
    })
    .assert_seen(&["freed=2"]);
}

#[test]
fn reclaim_vs_map_drop() {
    explore(Bound::Env, || {
        let fx = Fixture::new(2);
        fx.store_page(IDX, bytes::OLD);
        fx.cache(IDX);
        let other_store = Arc::new(MemStore::new());
        let other = PageMap::new(fx.pool.clone(), other_store);
        drop(other.load(7).unwrap());
        assert_eq!(fx.pool.free_frames(), 0);
        let dropper = spawn_with(&other, |_| ());
        drop(other);
        let r = fx.pool.reclaim(2);
        dropper.join().unwrap();
        // The dropped map's frame came back once (by its drop or by the
        // eviction); ours may have been evicted too.
        assert_eq!(
            fx.pool.free_frames() + fx.map.nr_pages() as usize,
            fx.capacity(),
            "{r:?}"
        );
        check_quiescent(&fx);
        format!("ours_kept={}", fx.map.nr_pages())
    })
    .assert_seen(&["ours_kept=0"]);
}
