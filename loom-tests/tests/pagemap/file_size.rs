//! The file size in bytes: a size change, an extending `write_at` and a
//! writeback of the last page. No byte below the final size is lost (the
//! store has it once the map is synced), and nothing is ever written to the
//! store past the size (a file-like `MemStore` keeps every byte past its
//! length zero, and its length is the map's).

use std::sync::Arc;

use loom_tests::{explore, spawn_with, Bound};
use pagemap::{FramePool, MemStore, PageMap, StoreControl, PAGE_SIZE};

const OLD: u8 = 0x11;
const NEW: u8 = 0x22;
/// The file's size at the start: page 0 is its partial last page.
const SIZE: u64 = 100;
/// The extending write: bytes [SIZE, SIZE + LEN).
const LEN: usize = 50;

/// A map over a 100-byte file whose page 0 is cached and dirty with OLD.
fn fixture() -> (Arc<MemStore>, Arc<PageMap>) {
    let store = Arc::new(MemStore::with_size(SIZE));
    let map = PageMap::new(Arc::new(FramePool::new(2).unwrap()), store.clone());
    assert_eq!(
        map.write_at(0, &[OLD; SIZE as usize]).unwrap(),
        SIZE as usize
    );
    (store, map)
}

/// After everything: sync, then the store is the file: its length is the
/// map's size, bytes below it are the ones written (OLD, then NEW up to the
/// end of the extending write if it is inside the size, zeroes after), and
/// none past it.
fn check(store: &MemStore, map: &PageMap, wrote_new: bool) -> u64 {
    let r = map.writeback(..);
    assert!(r.errors.is_empty(), "{r:?}");
    let size = map.size();
    assert_eq!(
        store.size().unwrap(),
        Some(size),
        "the store's length is the map's"
    );
    let page = store.page(0).expect("written");
    for (i, &b) in page.iter().enumerate().take(PAGE_SIZE) {
        let i = i as u64;
        let want = if i >= size {
            0 // nothing written past the size
        } else if i < SIZE {
            OLD
        } else if wrote_new && i < SIZE + LEN as u64 {
            NEW
        } else {
            0
        };
        assert_eq!(b, want, "byte {i} of a {size}-byte file\n{}", map.dump());
    }
    size
}

/// An extending write races a writeback of the page it extends into: the
/// writeback reads the size under the page lock, and the write raises it
/// before unlocking, so the writeback writes every byte it cleaned.
/// (Raising the size after the unlock loses the new bytes: mutant Z01.)
#[test]
fn extending_write_vs_writeback() {
    explore(Bound::Env, || {
        let (store, map) = fixture();
        let flusher = spawn_with(&map, |map| {
            let r = map.writeback(..);
            assert!(r.errors.is_empty(), "{r:?}");
        });
        assert_eq!(map.write_at(SIZE, &[NEW; LEN]).unwrap(), LEN);
        flusher.join().unwrap();
        let size = check(&store, &map, true);
        assert_eq!(size, SIZE + LEN as u64);
        "ok"
    })
    .assert_seen(&["ok"]);
}

/// A shrink, an extending write and a writeback of the last page, all at
/// once: whichever size change is last decides the size; no byte below it
/// is lost and none past it reaches the store.
#[test]
fn set_size_vs_extending_write_vs_writeback() {
    explore(Bound::Cap(1), || {
        let (store, map) = fixture();
        let writer = spawn_with(&map, |map| {
            assert_eq!(map.write_at(SIZE, &[NEW; LEN]).unwrap(), LEN);
        });
        let flusher = spawn_with(&map, |map| {
            let r = map.writeback(..);
            assert!(r.errors.is_empty(), "{r:?}");
        });
        map.set_size(120).unwrap();
        writer.join().unwrap();
        flusher.join().unwrap();
        let size = check(&store, &map, true);
        // 120: the write came first and was cut; 150: it came last.
        assert!(size == 120 || size == SIZE + LEN as u64, "{size}");
        format!("size={size}")
    })
    .assert_seen(&["size=120", "size=150"]);
}

/// A shrink races the write-back of the old last page (written with the
/// old, longer size); then an append's dirty page leaves the cache unwritten
/// (remove-or-zero). The store must still end as long as the size: the map
/// keeps the store's length (`store_size`), which the drop consults. The
/// write-back raises that record before it releases WRITEBACK, and the
/// shrink waits for WRITEBACK before its own record, so the shrink's wins;
/// raising it after the release (mutant Z02) can leave the record above the
/// store's real length, and the drop then skips extending the store.
#[test]
fn shrink_vs_last_page_writeback_then_dropped_append() {
    explore(Bound::Env, || {
        let (store, map) = fixture();
        // Size 150, page 0 dirty; the store is still 100 bytes long.
        assert_eq!(map.write_at(SIZE, &[NEW; LEN]).unwrap(), LEN);
        let flusher = spawn_with(&map, |map| {
            let r = map.writeback(..);
            assert!(r.errors.is_empty(), "{r:?}");
        });
        map.set_size(120).unwrap();
        flusher.join().unwrap();
        // Back to 150 bytes by an append whose page is then dropped unwritten.
        assert_eq!(map.write_at(120, &[NEW; 30]).unwrap(), 30);
        let r = map.remove_or_zero(0..1);
        assert!(r.errors.is_empty(), "{r:?}");
        assert_eq!(map.size(), SIZE + LEN as u64);
        assert_eq!(
            store.size().unwrap(),
            Some(map.size()),
            "the store is shorter than the size after the append was dropped"
        );
        "ok"
    })
    .assert_seen(&["ok"]);
}

/// A two-page file whose page 1 (OLD in the store) is not cached, and a
/// map with room for it.
fn uncached_page_1() -> Arc<PageMap> {
    let store = Arc::new(MemStore::with_size(2 * PAGE_SIZE as u64));
    store.set_page(1, &[OLD; PAGE_SIZE]);
    PageMap::new(Arc::new(FramePool::new(2).unwrap()), store)
}

/// A `write_at` of the whole of an uncached page (published with its new
/// bytes and no store read) races a `read_at` of it: the reader sees the
/// old page or the new one, never the frame's earlier bytes (the page is
/// LOADING until the copy is in; publishing first would show them).
#[test]
fn whole_page_overwrite_vs_read() {
    explore(Bound::Env, || {
        let map = uncached_page_1();
        let writer = spawn_with(&map, |map| {
            assert_eq!(
                map.write_at(PAGE_SIZE as u64, &[NEW; PAGE_SIZE]).unwrap(),
                PAGE_SIZE
            );
        });
        let mut buf = [0u8; PAGE_SIZE];
        assert_eq!(map.read_at(PAGE_SIZE as u64, &mut buf).unwrap(), PAGE_SIZE);
        writer.join().unwrap();
        let seen = buf[0];
        assert!(
            buf.iter().all(|&b| b == seen) && (seen == OLD || seen == NEW),
            "read {seen:#x}.. of a page that held only {OLD:#x} or {NEW:#x}"
        );
        // Whatever the order, the page ends NEW and dirty.
        let mut after = [0u8; 8];
        map.read_at(PAGE_SIZE as u64, &mut after).unwrap();
        assert_eq!(after, [NEW; 8]);
        assert_eq!(map.dirty_indices(..), vec![1]);
        if seen == NEW {
            "new"
        } else {
            "old"
        }
    })
    .assert_seen(&["old", "new"]);
}

/// An extending `write_at` of a whole page past the size (published with
/// its bytes, no read) races a writeback: the size is raised before the
/// page is unlocked, so the writeback writes the whole page or finds it
/// locked or not yet dirty; never a dirty page it cleans with a size that
/// leaves the page out (raising after the unlock: mutant Z04).
#[test]
fn whole_page_append_vs_writeback() {
    explore(Bound::Env, || {
        let (store, map) = fixture();
        let at = PAGE_SIZE as u64;
        let flusher = spawn_with(&map, |map| {
            let r = map.writeback(..);
            assert!(r.errors.is_empty(), "{r:?}");
        });
        assert_eq!(map.write_at(at, &[NEW; PAGE_SIZE]).unwrap(), PAGE_SIZE);
        flusher.join().unwrap();
        let r = map.writeback(..);
        assert!(r.errors.is_empty(), "{r:?}");
        assert_eq!(map.size(), 2 * PAGE_SIZE as u64);
        assert_eq!(store.size().unwrap(), Some(map.size()));
        let page = store.page(1).expect("page 1 written");
        assert!(page.iter().all(|&b| b == NEW), "page 1 lost bytes");
        "ok"
    })
    .assert_seen(&["ok"]);
}
