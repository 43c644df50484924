//! Model 6: the slot's holder count refuses overflow instead of wrapping.
//!
//! Under loom the count field is 4 bits (`MAX_REFS` = 7, the top bit a guard), so the limit is
//! reached with a handful of references, some held in another thread, while
//! concurrent puts make room again.

use loom_tests::{
    check_quiescent, explore, is_free, model, page_prefix, spawn_with, Bound, Fixture,
};
use pagemap::MAX_REFS;
use pagemap::{Error, PageRef};

const IDX: u64 = 6;

#[test]
fn max_refs_is_tiny_under_loom() {
    assert_eq!(MAX_REFS, 7);
}

fn overflow<T: std::fmt::Debug>(r: &Result<T, Error>) -> bool {
    match r {
        Err(Error::RefcountOverflow { index }) => {
            assert_eq!(*index, IDX);
            true
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => false,
    }
}

/// Sequential edge: at exactly `MAX_REFS` holders every way of taking one
/// more (find, load, try_clone, load_nowait) is refused, and nothing changes.
#[test]
fn refusal_at_the_limit() {
    model(|| {
        let (fx, _) = Fixture::with_cached(2, IDX, 0x66);
        let first = fx.map.find(IDX).unwrap().unwrap();
        let mut refs: Vec<PageRef<'_>> = vec![];
        while (refs.len() as u64) < MAX_REFS - 1 {
            refs.push(first.try_clone().unwrap());
        }
        assert_eq!(first.holders(), MAX_REFS);
        assert!(overflow(&first.try_clone()));
        assert!(overflow(&fx.map.find(IDX)));
        assert!(overflow(&fx.map.load(IDX)));
        assert!(overflow(&fx.map.load_nowait(IDX)));
        assert_eq!(first.holders(), MAX_REFS, "a refused get changed the count");
        assert_eq!(page_prefix(&first, 8), vec![0x66; 8]);
        refs.pop();
        let again = fx.map.find(IDX).unwrap().expect("room again");
        assert_eq!(again.holders(), MAX_REFS);
        drop(again);
        drop(refs);
        assert_eq!(first.holders(), 1);
        drop(first);
        check_quiescent(&fx);
        assert_eq!(
            fx.map.free_unused().freed,
            1,
            "count back at 0, not wrapped"
        );
    });
}

/// Six references held in the main thread; another thread takes two more
/// (the second may overflow) while the main thread drops one and then takes
/// one. A refusal happens only at the limit; the raw count never wraps: it
/// passes `MAX_REFS` only by the one transient add of the other thread's
/// refused `find` (the guard bit), which is undone; and when everyone has
/// let go the count is back at zero (the page is removable).
#[test]
fn overflow_vs_concurrent_put() {
    explore(Bound::Env, || {
        let (fx, frame) = Fixture::with_cached(2, IDX, 0x66);
        let first = fx.map.find(IDX).unwrap().unwrap();
        let mut held = vec![];
        for _ in 0..MAX_REFS - 2 {
            held.push(first.try_clone().unwrap());
        }
        assert_eq!(first.holders(), MAX_REFS - 1);

        let taker = spawn_with(&fx.map, |map| {
            let a = map.find(IDX).unwrap().expect("room for one more");
            assert!(a.holders() <= MAX_REFS);
            let b = map.find(IDX);
            let refused = overflow(&b);
            if let Ok(Some(b)) = &b {
                assert!(b.holders() <= MAX_REFS);
                assert_eq!(page_prefix(b, 8), vec![0x66; 8]);
            }
            drop(b);
            refused
        });

        // A concurrent put makes room; then take one (may itself be refused
        // if the taker holds two at that moment).
        drop(held.pop());
        let mine = first.try_clone();
        let mine_refused = overflow(&mine);
        // The taker's refused find adds before it checks: one transient.
        assert!(first.holders() <= MAX_REFS + 1);
        drop(mine);
        let taker_refused = taker.join().unwrap();

        drop(held);
        assert_eq!(first.holders(), 1);
        drop(first);
        assert_eq!(fx.map.holders(IDX), 0);
        assert!(!is_free(&fx.pool, frame));
        check_quiescent(&fx);
        assert_eq!(fx.map.free_unused().freed, 1, "count did not return to 0");
        format!("taker_refused={taker_refused} mine_refused={mine_refused}")
    })
    .assert_seen(&[
        "taker_refused=false mine_refused=false",
        "taker_refused=true mine_refused=false",
        "taker_refused=false mine_refused=true",
    ]);
}
