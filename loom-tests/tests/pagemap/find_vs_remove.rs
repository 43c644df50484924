//! Models 1 and 2: lock-free `find` and `put` against `free_unused` (mark,
//! then final removal) of an unreferenced clean page.

use loom::thread;
use loom_tests::{check_quiescent, explore, is_free, page_prefix, spawn_with, Bound, Fixture};

const IDX: u64 = 1;

/// What the finder saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Hit,
    Miss,
}

/// `find` racing with `free_unused`: the finder runs in `find_in_spawned`'s
/// thread choice, the remover in the other one.
fn find_vs_free_unused(find_in_spawned: bool) {
    explore(Bound::Env, move || {
        let (fx, frame) = Fixture::with_cached(2, IDX, 0xab);

        let finder = {
            let map = fx.map.clone();
            let pool = fx.pool.clone();
            move || match map.find(IDX).expect("find") {
                Some(page) => {
                    // Held: the page must be alive and intact, whatever the remover does.
                    assert_eq!(page.frame(), frame);
                    assert!(!is_free(&pool, frame), "a held page's frame is free");
                    assert_eq!(page_prefix(&page, 8), vec![0xab; 8]);
                    assert!(page.is_uptodate());
                    assert!(!is_free(&pool, frame), "a held page's frame was freed");
                    Seen::Hit
                }
                None => Seen::Miss,
            }
        };
        let remover = {
            let map = fx.map.clone();
            move || {
                let r = map.free_unused();
                assert!(r.errors.is_empty());
                assert_eq!(r.written, 0, "the page is clean");
                assert_eq!(r.freed + r.referenced + r.raced, 1, "{r:?}");
                r.freed
            }
        };

        let (seen, freed) = if find_in_spawned {
            let t = thread::spawn(finder);
            let freed = remover();
            (t.join().unwrap(), freed)
        } else {
            let t = thread::spawn(remover);
            let seen = finder();
            (seen, t.join().unwrap())
        };

        // Either the page is still cached (the removal was aborted) or it is
        // gone and its frame is back in the pool. A miss means it was removed.
        if freed == 1 {
            assert_eq!(fx.map.nr_pages(), 0);
            assert!(fx.map.find(IDX).unwrap().is_none());
            assert!(is_free(&fx.pool, frame), "removed page's frame not freed");
            assert_eq!(fx.pool.free_frames(), fx.capacity());
        } else {
            assert_eq!(seen, Seen::Hit, "nothing freed, yet find missed");
            assert_eq!(fx.map.nr_pages(), 1);
            let page = fx.map.find(IDX).unwrap().expect("kept page");
            assert_eq!(page.frame(), frame);
            assert_eq!(page_prefix(&page, 8), vec![0xab; 8]);
            assert_eq!(fx.pool.free_frames(), fx.capacity() - 1);
        }
        check_quiescent(&fx);
        format!("{seen:?} freed={freed}")
    })
    // Hit and kept (removal aborted), hit then freed (find before the mark),
    // miss and freed (removal first).
    .assert_seen(&["Hit freed=0", "Hit freed=1", "Miss freed=1"]);
}

/// Model 1a: the finder is the spawned thread.
#[test]
fn find_vs_final_removal_finder_spawned() {
    find_vs_free_unused(true);
}

/// Model 1b: the remover is the spawned thread.
#[test]
fn find_vs_final_removal_remover_spawned() {
    find_vs_free_unused(false);
}

/// Model 2: a holder drops its reference while `free_unused` runs. The page
/// may or may not be freed, but never while it is held.
#[test]
fn put_vs_removal() {
    explore(Bound::Env, || {
        let (fx, frame) = Fixture::with_cached(2, IDX, 0x5a);
        let page = fx.map.find(IDX).unwrap().expect("cached");

        let remover = spawn_with(&fx.map, |map| {
            let r = map.free_unused();
            assert!(r.errors.is_empty());
            assert_eq!(r.freed + r.referenced + r.raced, 1, "{r:?}");
            r.freed
        });

        // Still held: alive and intact.
        assert!(!is_free(&fx.pool, frame));
        assert_eq!(page_prefix(&page, 8), vec![0x5a; 8]);
        assert!(!is_free(&fx.pool, frame));
        drop(page); // the put, racing with mark / yank

        let freed = remover.join().unwrap();
        assert_eq!(fx.map.nr_pages(), 1 - freed);
        assert_eq!(is_free(&fx.pool, frame), freed == 1);
        check_quiescent(&fx);
        format!("freed={freed}")
    })
    .assert_seen(&["freed=0", "freed=1"]);
}
