//! Models written to kill mutants of `scripts/mutants.txt` that the other
//! models let survive (issue 9). Each names the mutant it is for; each
//! passes on the real code and fails on its mutant (`scripts/mutants.sh`).
//!
//! * `load_vs_load_in_an_existing_leaf` (S03): the slot word's publish is a
//!   Release, so a loader that takes a reference to a page another loader
//!   just published (still LOADING) sees the frame's owner and index (the
//!   debug assertion in `page_ref`). Into a new leaf the leaf's own Release
//!   link orders them too, and `find` refuses a LOADING page, which is why
//!   `load_vs_load`'s models let a Relaxed publish pass.

use loom::thread;
use loom_tests::{explore, page_prefix, Bound, Fixture};

const IDX: u64 = 0;
const OLD: u8 = 0x31;

/// S03. Two loads of an absent page whose leaf exists already (a neighbour
/// is cached): the second loader may take its reference while the first
/// one's page is still LOADING, and then must see the frame's owner (debug
/// assertion). One store read; both see the stored bytes.
#[test]
fn load_vs_load_in_an_existing_leaf() {
    let seen = explore(Bound::Env, || {
        let fx = Fixture::new(3);
        fx.store_page(IDX, OLD);
        fx.cache(IDX + 1);
        let reads_before = fx.store.io_counts().0;
        let map = fx.map.clone();
        let t = thread::spawn(move || page_prefix(&map.load(IDX).expect("load"), 1));
        let mine = page_prefix(&fx.map.load(IDX).expect("load"), 1);
        let theirs = t.join().unwrap();
        assert_eq!((mine, theirs), (vec![OLD], vec![OLD]));
        assert_eq!(fx.store.io_counts().0 - reads_before, 1, "one store read");
        format!("free={}", fx.pool.free_frames())
    });
    seen.assert_seen(&["free=1"]);
}
