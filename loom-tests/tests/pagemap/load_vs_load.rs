//! Models 3 and 4: two loaders of one absent index (insert vs insert, one
//! read of the backing store, read errors to every caller).

use loom::thread;
use loom_tests::{
    assert_none_locked, check_quiescent, explore, is_free, page_prefix, spawn_with, Bound, Fixture,
};
use pagemap::{flags, Error, FrameId};

const IDX: u64 = 5;

/// What one loader ended with.
#[derive(Debug)]
struct Loaded {
    frame: FrameId,
    prefix: Vec<u8>,
    flags: u32,
}

fn loader(fx: &Fixture) -> impl FnOnce() -> Loaded + Send + 'static {
    let map = fx.map.clone();
    move || {
        let page = map.load(IDX).expect("load");
        let loaded = Loaded {
            frame: page.frame(),
            prefix: page_prefix(&page, 8),
            flags: page.flags(),
        };
        assert!(page.is_uptodate());
        loaded
    }
}

/// Model 3 + 4: both load the same absent index. Exactly one frame ends up
/// in the map, the loser's frame (if it allocated one) is back in the pool,
/// both got the same frame, the store was read exactly once, and both saw
/// the up-to-date contents.
#[test]
fn insert_vs_insert_one_read() {
    explore(Bound::Env, || {
        // Three frames: a loser that allocated before losing must not find
        // the pool exhausted.
        let fx = Fixture::with_page(3, IDX, 0x77);

        let t = thread::spawn(loader(&fx));
        let a = loader(&fx)();
        let b = t.join().unwrap();

        assert_eq!(a.frame, b.frame, "the two loaders got different frames");
        for l in [&a, &b] {
            assert_eq!(l.prefix, vec![0x77; 8], "stale contents");
            assert_ne!(l.flags & flags::UPTODATE, 0);
            assert_ne!(l.flags & flags::PAGEMAP, 0);
        }
        let (reads, writes) = fx.store.io_counts();
        assert_eq!(reads, 1, "concurrent loaders read the store {reads} times");
        assert_eq!(writes, 0);
        assert_eq!(fx.map.nr_pages(), 1);
        assert_eq!(
            fx.pool.free_frames(),
            fx.capacity() - 1,
            "the loser's frame leaked"
        );
        assert!(!is_free(&fx.pool, a.frame));
        let page = fx.map.find(IDX).unwrap().expect("cached");
        assert_eq!(page.frame(), a.frame);
        drop(page);
        check_quiescent(&fx);
        // Which frame won tells whether the second loader lost an insert race
        // (it allocated frame 2 and freed it) or found the page directly.
        format!("winner={:?}", a.frame)
    })
    .assert_seen(&["winner=f1", "winner=f2"]);
}

/// Model 4b: both load an index whose read fails. Both callers get
/// `Error::Read`; no frame is left LOCKED; the map and pool stay consistent
/// (a page left by the failed read is allowed, but not held, not locked, and
/// removable); once the store heals, a load succeeds.
#[test]
fn load_vs_load_read_error() {
    explore(Bound::Env, || {
        let fx = Fixture::with_page(3, IDX, 0x42);
        fx.store.fail_reads(IDX, true);

        let failing_loader = || {
            let map = fx.map.clone();
            move || match map.load(IDX) {
                Err(Error::Read { index, .. }) => {
                    assert_eq!(index, IDX);
                }
                Err(e) => panic!("expected a read error, got {e}"),
                Ok(p) => panic!("load succeeded despite the read error: {p:?}"),
            }
        };
        let t = thread::spawn(failing_loader());
        failing_loader()();
        t.join().unwrap();

        assert_none_locked(&fx.pool);
        let left = fx.map.nr_pages();
        assert!(left <= 1);
        assert_eq!(fx.pool.free_frames() as u64, fx.capacity() as u64 - left);
        // A failed page is never returned by find.
        assert!(fx.map.find(IDX).unwrap().is_none());
        assert!(matches!(
            fx.map.load_nowait(IDX),
            Err(Error::WouldBlock { .. })
        ));
        check_quiescent(&fx);

        // The store heals: a load now succeeds and sees the right contents.
        fx.store.fail_reads(IDX, false);
        {
            let page = fx.map.load(IDX).expect("load after heal");
            assert_eq!(page_prefix(&page, 8), vec![0x42; 8]);
            assert_eq!(page.flags() & (flags::ERROR | flags::LOCKED), 0);
        }
        assert_eq!(fx.map.nr_pages(), 1);
        check_quiescent(&fx);
        let r = fx.map.free_unused();
        assert_eq!(r.freed, 1);
        assert_eq!(fx.pool.free_frames(), fx.capacity());
        format!("left={left}")
    })
    // Both a clean discard and a page left behind (the other loader held it
    // when the first tried to discard it) are explored.
    .assert_seen(&["left=0", "left=1"]);
}

/// A load publishing a page into a leaf that already exists, vs a lookup of
/// it: the lookup that sees the slot word also sees the frame's owner and
/// index set before the publish (the debug assertion in every get checks
/// it; debug assertions are on in the models). The other models start from
/// an empty tree, where the new leaf's own Release link orders the owner
/// too, so weakening the publish passed them all (issue 9's mutant (a),
/// catalogue S03).
#[test]
fn publish_into_an_existing_leaf_vs_find() {
    explore(Bound::Env, || {
        let fx = Fixture::with_page(3, IDX, 0x77);
        // The leaf of IDX and IDX + 1 exists before the race.
        fx.cache(IDX + 1);
        let t = spawn_with(&fx.map, |map| drop(map.load(IDX).expect("load")));
        let seen = match fx.map.find(IDX).unwrap() {
            Some(page) => {
                assert_eq!(page_prefix(&page, 1), [0x77]);
                "hit"
            }
            None => "miss",
        };
        t.join().unwrap();
        seen
    })
    .assert_seen(&["hit", "miss"]);
}
