//! `free_unused` frees a dirty, unheld page after writing it back (it does
//! not merely clean it and keep it). The remover holds the page for the
//! write with a count that keeps its REMOVAL mark (`slot::get_marked`), so
//! its own put still sees the mark and the page is yanked; taking that hold
//! with an ordinary `get` (which clears REMOVAL) would keep every written-back
//! page: the catalogue's mutant P03.

use std::sync::Arc;

use pagemap::{FramePool, MemStore, PageMap};

#[test]
fn a_dirty_unheld_page_is_written_back_and_freed() {
    let pool = Arc::new(FramePool::new(4).unwrap());
    let store = Arc::new(MemStore::new());
    let map = PageMap::new(pool.clone(), store.clone());
    map.load(3).unwrap().write(0, b"dirty").unwrap();
    assert_eq!(map.dirty_indices(..), vec![3]);

    let report = map.free_unused();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(
        (
            report.written,
            report.freed,
            report.raced,
            report.referenced
        ),
        (1, 1, 0, 0),
        "{report:?}"
    );
    assert_eq!(map.nr_pages(), 0, "{}", map.dump());
    assert_eq!(pool.free_frames(), pool.capacity());
    assert_eq!(&store.page(3).expect("written")[..5], b"dirty");
}
