//! Model 5: lock-free readers against radix node unlinking and epoch
//! reclamation.
//!
//! Under loom the fan-out is 4, so indices 0 and 4 sit in different leaves
//! under a level-1 root. Removing the only page of a leaf unlinks that leaf;
//! if the root is left with child 0 only, the tree shrinks and the old root
//! is retired too. The remover then drives the epoch (`pin().flush()`), so
//! the deferred reclaim really runs inside the model; pagemap (under loom)
//! poisons a reclaimed node instead of freeing it and asserts in every
//! lookup that the node it stands on is not poisoned.
//!
//! A sentinel deferred right after the removal tells whether reclamation
//! happened during an execution (bags are collected in order, so when the
//! sentinel has run the retired nodes have been reclaimed too), and the
//! outcome sets check that reclamation really overlapped the reader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use loom_tests::{
    check_quiescent, explore, is_free, model, page_prefix, spawn_with, Bound, Fixture,
};

/// Defers a sentinel behind whatever the current thread retired so far.
fn defer_sentinel() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let guard = crossbeam_epoch::pin();
    guard.defer(move || f.store(true, Ordering::SeqCst));
    flag
}

/// Flushes per drive: the retired bag is sealed at epoch e by the first; the
/// epoch can then reach e + 2 (the bag expires) by the second.
const FLUSHES: usize = 2;

/// Pushes this thread's retired nodes to the global queue and tries to
/// advance the epoch and collect, a few times.
fn drive_epoch() {
    for _ in 0..FLUSHES {
        crossbeam_epoch::pin().flush();
    }
}

/// A `find` of `index`: whether it hit; a hit has the bytes `byte`.
fn find_hit(map: &pagemap::PageMap, index: u64, byte: u8) -> bool {
    match map.find(index).unwrap() {
        Some(p) => {
            assert_eq!(page_prefix(&p, 8), vec![byte; 8]);
            true
        }
        None => false,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReaderOp {
    /// `find` of the removed index, then of the kept one.
    Find,
    /// `load` of the removed index (may re-insert it and regrow the tree).
    Load,
    /// A lock-free scan (`cached_indices`, the walk free_unused and
    /// writeback use) over the nodes being unlinked.
    Scan,
}

/// Pages at 0 and 4; the remover holds 0 and frees the unreferenced 4.
fn reader_vs_leaf_unlink(op: ReaderOp) {
    let seen = explore(Bound::Env, move || {
        let fx = Fixture::new(3);
        fx.store_page(0, 0x10);
        fx.store_page(4, 0x14);
        fx.cache(0);
        let f4 = fx.cache(4);
        assert_eq!(fx.map.memory().nodes, 3, "root + two leaves");
        let sentinel: Arc<std::sync::OnceLock<Arc<AtomicBool>>> = Arc::default();

        let reader = spawn_with(&(fx.map.clone(), sentinel.clone()), move |(map, sentinel)| {
            let hit4 = match op {
                ReaderOp::Find => find_hit(&map, 4, 0x14),
                ReaderOp::Load => {
                    let p = map.load(4).expect("load");
                    assert_eq!(page_prefix(&p, 8), vec![0x14; 8]);
                    true
                }
                ReaderOp::Scan => {
                    let seen = map.cached_indices(..);
                    assert!(seen == vec![0, 4] || seen == vec![0], "scan saw {seen:?}");
                    seen.len() == 2
                }
            };
            // Did reclamation finish before this lookup returned?
            let reclaimed = sentinel.get().is_some_and(|s| s.load(Ordering::SeqCst));
            if op == ReaderOp::Find {
                let p0 = map.find(0).unwrap().expect("page 0 is held by the remover");
                assert_eq!(page_prefix(&p0, 8), vec![0x10; 8]);
            }
            (hit4, reclaimed)
        });

        let p0 = fx.map.find(0).unwrap().expect("cached");
        let r = fx.map.free_unused();
        assert!(r.errors.is_empty());
        assert!(r.referenced >= 1, "page 0 is held: {r:?}");
        let s = defer_sentinel();
        sentinel.set(s.clone()).unwrap();
        drive_epoch();
        drop(p0);

        let (hit4, reclaimed_early) = reader.join().unwrap();
        let reclaimed = s.load(Ordering::SeqCst);
        let has4 = fx.map.find(4).unwrap().is_some();
        if r.freed == 0 {
            assert!(
                op != ReaderOp::Scan && hit4 && has4,
                "4 kept only because the reader took it"
            );
        } else {
            assert_eq!(r.freed, 1);
            if op == ReaderOp::Find {
                assert!(!has4);
                assert!(is_free(&fx.pool, f4));
            }
        }
        check_quiescent(&fx);
        format!(
            "freed={} hit4={hit4} reclaimed={reclaimed} reclaimed_before_reader_done={reclaimed_early}",
            r.freed
        )
    })
    .seen();
    assert!(
        seen.iter()
            .any(|o| o.contains("freed=1") && o.contains("reclaimed_before_reader_done=true")),
        "no execution reclaimed a node while the reader ran: {seen:?}"
    );
    if op != ReaderOp::Scan {
        // (A scan takes no reference, so it never aborts the removal.)
        assert!(
            seen.iter().any(|o| o.contains("freed=0")),
            "the reader never aborted the removal: {seen:?}"
        );
    }
    if op == ReaderOp::Find {
        assert!(
            seen.iter()
                .any(|o| o.contains("freed=1") && o.contains("hit4=false")),
            "{seen:?}"
        );
    }
}

/// Model 5a: `find` of the index whose leaf (and the root above it) is
/// being unlinked and reclaimed.
#[test]
fn find_vs_leaf_unlink_and_reclaim() {
    reader_vs_leaf_unlink(ReaderOp::Find);
}

/// Model 5b: `load` of that index: it may re-insert the page into a new
/// leaf while the old leaf and root are being reclaimed.
#[test]
fn load_vs_leaf_unlink_and_reclaim() {
    reader_vs_leaf_unlink(ReaderOp::Load);
}

/// Model 5d: a lock-free scan over the leaf and root being unlinked and
/// reclaimed.
#[test]
fn scan_vs_leaf_unlink_and_reclaim() {
    reader_vs_leaf_unlink(ReaderOp::Scan);
}

/// Model 5c: the only page of a one-leaf tree: the root leaf itself is
/// unlinked (root pointer cleared) and reclaimed under a reader of it.
#[test]
fn find_vs_root_unlink_and_reclaim() {
    let seen = explore(Bound::Env, || {
        let (fx, f) = Fixture::with_cached(2, 2, 0x22);
        let reader = spawn_with(&fx.map, |map| find_hit(&map, 2, 0x22));
        let r = fx.map.free_unused();
        let s = defer_sentinel();
        drive_epoch();
        let hit = reader.join().unwrap();
        if r.freed == 1 {
            assert!(is_free(&fx.pool, f));
            assert_eq!(fx.map.memory().nodes, 0);
        } else {
            assert!(hit);
        }
        check_quiescent(&fx);
        format!(
            "freed={} hit={hit} reclaimed={}",
            r.freed,
            s.load(Ordering::SeqCst)
        )
    })
    .seen();
    assert!(
        seen.iter()
            .any(|o| o.contains("freed=1") && o.contains("reclaimed=true")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|o| o.contains("hit=false")), "{seen:?}");
    assert!(seen.iter().any(|o| o.contains("freed=0")), "{seen:?}");
}

/// Model 5e: the tree grows under a reader. Page 0 sits in a root leaf; a
/// loader of index 4 adds a level (new root above the old leaf) while the
/// reader finds 0 and scans.
#[test]
fn reader_vs_tree_growth() {
    model(|| {
        let fx = Fixture::new(3);
        fx.store_page(0, 0x10);
        fx.store_page(4, 0x14);
        fx.cache(0);
        assert_eq!(fx.map.memory().nodes, 1);
        let loader = spawn_with(&fx.map, |map| {
            let p = map.load(4).expect("load");
            assert_eq!(page_prefix(&p, 8), vec![0x14; 8]);
        });
        let p = fx.map.find(0).unwrap().expect("page 0 never leaves");
        assert_eq!(page_prefix(&p, 8), vec![0x10; 8]);
        drop(p);
        let seen = fx.map.cached_indices(..);
        assert!(seen == vec![0] || seen == vec![0, 4], "scan saw {seen:?}");
        loader.join().unwrap();
        assert_eq!(fx.map.cached_indices(..), vec![0, 4]);
        assert_eq!(fx.map.memory().nodes, 3);
        check_quiescent(&fx);
    });
}
