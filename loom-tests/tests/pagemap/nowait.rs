//! Model 9: `load_nowait` never blocks (the fault handler calls it under an
//! address-space lock). Each model makes blocking a deadlock: the thing
//! load_nowait could wait for is released only after load_nowait returns,
//! so if it ever waited, loom would report the deadlock.

use loom_tests::{explore, gated_map, model, page_prefix, spawn_with, Bound, Fixture};
use pagemap::Error;

const IDX: u64 = 9;

/// The page is up to date but its page lock is held (I/O, a writer): the
/// lock-free path returns it without waiting for the lock.
#[test]
fn load_nowait_ignores_page_lock() {
    model(|| {
        let (fx, frame) = Fixture::with_cached(2, IDX, 0x99);
        fx.pool.lock_for_model(frame);
        let t = spawn_with(&fx.map, move |map| {
            let p = map
                .load_nowait(IDX)
                .expect("up to date: returned even while locked");
            assert_eq!(p.frame(), frame);
        });
        t.join().unwrap(); // with the page lock still held
        fx.pool.unlock_for_model(frame);
    });
}

/// The page is being read in by another thread (inserted LOCKED and
/// LOADING; the read stops at the gate until load_nowait has returned):
/// load_nowait says WouldBlock, or the page if the read already finished.
#[test]
fn load_nowait_vs_loading_page() {
    explore(Bound::Env, || {
        let (_pool, store, map) = gated_map(2);
        store.inner.set_page(IDX, &[0x99; pagemap::PAGE_SIZE]);
        store.arm_read();
        let loader = spawn_with(&map, |map| {
            let p = map.load(IDX).expect("load");
            assert_eq!(page_prefix(&p, 8), vec![0x99; 8]);
        });
        let r = map.load_nowait(IDX).map(|p| page_prefix(&p, 8));
        let outcome = match &r {
            Err(Error::WouldBlock { index }) => {
                assert_eq!(*index, IDX);
                "would_block"
            }
            Ok(_) => unreachable!("the read cannot have finished: the gate is closed"),
            Err(e) => panic!("unexpected {e}"),
        };
        // A concurrent load_nowait at the same time as the read, then open.
        store.wait_for_caller();
        assert!(matches!(
            map.load_nowait(IDX),
            Err(Error::WouldBlock { .. })
        ));
        store.open();
        loader.join().unwrap();
        assert_eq!(
            page_prefix(&map.load_nowait(IDX).unwrap(), 8),
            vec![0x99; 8]
        );
        outcome
    })
    .assert_seen(&["would_block"]);
}
