//! Removal model 5: two removers on overlapping ranges. `remove`,
//! `try_remove` and `free_unused` share the remover lock: they run one
//! after the other (`try_remove` returns `Error::Busy` instead of waiting),
//! every page is removed exactly once, a dirty page is written exactly once,
//! and the counts add up.

use loom_tests::{check_quiescent, dirty, explore, spawn_with, Bound, Fixture};
use pagemap::Error;

/// `remove(0..=1)` against `try_remove(1..=2)`, pages 0 and 1 cached (page 1
/// dirty).
#[test]
fn remove_vs_try_remove() {
    explore(Bound::Env, || {
        let fx = Fixture::new(2);
        fx.cache(0);
        drop(dirty(&fx.map, 1, 0x5e));
        let other = spawn_with(&fx.map, |map| map.try_remove(1..=2));
        let mine = fx.map.remove(0..=1);
        let theirs = other.join().unwrap();
        assert!(mine.errors.is_empty(), "{mine:?}");
        let (removed, written, outcome) = match theirs {
            Err(Error::Busy) => (0, 0, "busy".to_string()),
            Ok(t) => {
                assert!(t.errors.is_empty(), "{t:?}");
                assert_eq!(t.raced + t.referenced, 0, "serialised: {t:?}");
                (t.removed, t.written, format!("ok removed={}", t.removed))
            }
            Err(e) => panic!("try_remove: {e:?}"),
        };
        assert_eq!(mine.raced + mine.referenced, 0, "serialised: {mine:?}");
        assert_eq!(mine.removed + removed, 2, "{mine:?} + {removed}");
        assert_eq!(mine.written + written, 1, "page 1 written once");
        let (_, writes) = fx.store.io_counts();
        assert_eq!(writes, 1, "page 1 written once");
        assert_eq!(fx.store.page(1).unwrap()[..8], [0x5e; 8]);
        assert_eq!(fx.map.nr_pages(), 0);
        assert_eq!(fx.pool.free_frames(), fx.capacity(), "double free or leak");
        check_quiescent(&fx);
        outcome
    })
    // Refused while remove ran; ran first (took page 1); ran after (nothing left).
    .assert_seen(&["busy", "ok removed=1", "ok removed=0"]);
}

/// `remove(0..=1)` against `free_unused()` (whole map), pages 0 and 1
/// cached, page 0 dirty.
#[test]
fn remove_vs_free_unused() {
    explore(Bound::Env, || {
        let fx = Fixture::new(2);
        drop(dirty(&fx.map, 0, 0x6f));
        fx.cache(1);
        let other = spawn_with(&fx.map, |map| map.free_unused());
        let mine = fx.map.remove(0..=1);
        let f = other.join().unwrap();
        assert!(mine.errors.is_empty() && f.errors.is_empty());
        assert_eq!(mine.raced + mine.referenced + f.raced + f.referenced, 0);
        assert_eq!(mine.removed + f.freed, 2, "{mine:?} {f:?}");
        assert_eq!(mine.written + f.written, 1, "{mine:?} {f:?}");
        assert_eq!(fx.store.io_counts().1, 1);
        assert_eq!(fx.store.page(0).unwrap()[..8], [0x6f; 8]);
        assert_eq!(fx.pool.free_frames(), fx.capacity(), "double free or leak");
        check_quiescent(&fx);
        format!("remove={} free_unused={}", mine.removed, f.freed)
    })
    .assert_seen(&["remove=2 free_unused=0", "remove=0 free_unused=2"]);
}
