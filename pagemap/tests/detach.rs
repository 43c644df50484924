//! Issue 11, item 1: pages wholly past a new end leave the cache even while
//! held. The holder's reference is detached: it reads (zeroes), its writes
//! are refused with `Error::Detached`, its frame returns to the pool at the
//! last put, and a load of the index after the file grows gets a fresh page.
//!
//! The file is extended with the page-granular `truncate` (an end at or past
//! the current one only moves the end): the byte-granular `set_size` is
//! another helper's, not in this branch.

use std::sync::Arc;
use std::thread;

use pagemap::{Error, FramePool, MemStore, PageMap, PAGE_SIZE};

fn map(frames: usize) -> (Arc<PageMap>, Arc<MemStore>, Arc<FramePool>) {
    let store = Arc::new(MemStore::new());
    let pool = Arc::new(FramePool::new(frames).unwrap());
    let map = PageMap::new(pool.clone(), store.clone());
    (map, store, pool)
}

fn read5(map: &PageMap, index: u64) -> [u8; 5] {
    let mut b = [0u8; 5];
    map.load(index).unwrap().read(0, &mut b).unwrap();
    b
}

/// The reproduction: hold page 6, truncate to 2 pages, write "late"
/// through the held reference, drop it, extend to 8 pages: page 6 reads
/// zeroes and the next sync writes nothing to the store.
#[test]
fn a_write_through_a_held_page_past_a_truncate_never_resurfaces() {
    let (map, store, pool) = map(8);
    map.truncate(8);
    let held = map.load(6).unwrap();
    let frame = held.frame();
    let r = map.truncate(2);
    assert_eq!((r.detached, r.zeroed, r.removed), (1, 1, 0), "{r:?}");
    assert!(held.is_detached());
    assert_eq!(map.nr_pages(), 0, "the held page left the cache");
    assert_eq!(map.nr_detached(), 1);
    assert!(matches!(
        held.write(0, b"late"),
        Err(Error::Detached { index: 6 })
    ));
    assert!(!held.is_dirty(), "a refused write changes nothing");
    let mut b = [1u8; 4];
    held.read(0, &mut b).unwrap();
    assert_eq!(b, [0; 4], "a detached page reads as the file does there");
    drop(held);
    assert_eq!(map.nr_detached(), 0);
    assert_eq!(pool.free_frames(), 8, "the last put freed frame {frame:?}");
    map.truncate(8);
    assert_eq!(read5(&map, 6), [0; 5]);
    let (_, writes) = store.io_counts();
    let wb = map.writeback(..);
    assert_eq!(wb.written, 0, "{wb:?}");
    assert_eq!(store.io_counts().1, writes, "the store is untouched");
    assert!(store.page(6).is_none_or(|p| p.iter().all(|&b| b == 0)));
}

/// The extension while the old reference is still held: the new load gets
/// a fresh frame, and the old reference's write, put and clone never touch
/// the new page.
#[test]
fn a_load_after_the_extension_gets_a_fresh_page_while_the_old_is_held() {
    let (map, _store, pool) = map(8);
    let held = map.load(6).unwrap();
    held.write(0, b"early").unwrap();
    map.truncate(2);
    map.truncate(8);
    let fresh = map.load(6).unwrap();
    assert_ne!(fresh.frame(), held.frame());
    assert!(!fresh.is_detached() && held.is_detached());
    fresh.write(0, b"fresh").unwrap();
    assert!(held.write(0, b"stale").is_err());
    let clone = held.try_clone().unwrap();
    assert!(clone.is_detached());
    assert_eq!(held.holders(), 2);
    assert_eq!(fresh.holders(), 1, "the old holders are not counted here");
    drop(held);
    drop(clone);
    assert_eq!(fresh.holders(), 1);
    assert!(fresh.is_dirty());
    drop(fresh);
    assert_eq!(
        map.dirty_indices(..),
        vec![6],
        "the new page's mark is kept"
    );
    assert_eq!(read5(&map, 6), *b"fresh");
    assert_eq!(pool.free_frames(), 7);
    assert_eq!(map.nr_detached(), 0);
}

/// `mark_dirty` and `clear_dirty` through a detached reference leave the
/// page clean and do not touch the mark of the page now at its index.
#[test]
fn dirty_marks_through_a_detached_reference_are_ignored() {
    let (map, _store, _pool) = map(4);
    let held = map.load(3).unwrap();
    map.truncate(1);
    held.mark_dirty();
    assert!(!held.is_dirty());
    map.truncate(4);
    map.load(3).unwrap().write(0, b"x").unwrap();
    held.clear_dirty();
    assert_eq!(map.dirty_indices(..), vec![3]);
}

/// An owned reference (the `Arc` kind) is detached the same way, and its
/// drop on another thread frees the frame.
#[test]
fn an_owned_reference_is_detached_too() {
    let (map, _store, pool) = map(4);
    let owned = map.load(3).unwrap().into_owned(&map);
    map.truncate(0);
    assert!(owned.get().is_detached());
    assert!(matches!(
        owned.get().write(0, b"x"),
        Err(Error::Detached { index: 3 })
    ));
    thread::spawn(move || drop(owned)).join().unwrap();
    assert_eq!(pool.free_frames(), 4);
    assert_eq!(map.nr_detached(), 0);
}

/// Many holders and clones on several threads, racing the truncate: the
/// frame is freed once, after the last of them.
#[test]
fn many_holders_and_clones_free_the_frame_once() {
    for round in 0..50 {
        let (map, _store, pool) = map(4);
        let refs: Vec<_> = (0..8)
            .map(|_| map.load(2).unwrap().into_owned(&map))
            .collect();
        let threads: Vec<_> = refs
            .into_iter()
            .map(|r| {
                thread::spawn(move || {
                    for _ in 0..20 {
                        let c = r.get().try_clone().unwrap();
                        let _ = c.write(0, b"w");
                        drop(c);
                    }
                    drop(r);
                })
            })
            .collect();
        let t = {
            let map = map.clone();
            thread::spawn(move || map.truncate(1))
        };
        for th in threads {
            th.join().unwrap();
        }
        let r = t.join().unwrap();
        assert_eq!(pool.free_frames(), 4, "round {round}: {r:?}");
        assert_eq!(map.nr_detached(), 0);
        assert_eq!(map.nr_pages(), 0);
        map.truncate(4);
        assert_eq!(read5(&map, 2), [0; 5], "round {round}");
    }
}

/// A hole punch keeps zeroing held pages at their index (only truncate
/// detaches).
#[test]
fn a_hole_punch_does_not_detach() {
    let (map, _store, _pool) = map(4);
    let held = map.load(2).unwrap();
    held.write(0, b"data").unwrap();
    let r = map.remove_or_zero(2..3);
    assert_eq!((r.zeroed, r.detached), (1, 0));
    assert!(!held.is_detached());
    held.write(0, b"more").unwrap();
    assert_eq!(map.find(2).unwrap().unwrap().frame(), held.frame());
}

/// A page is full of zeroes after the truncate whatever its holders wrote
/// before it, even right up to the page's end.
#[test]
fn a_detached_page_is_zeroed_whole() {
    let (map, _store, _pool) = map(2);
    let held = map.load(1).unwrap();
    held.write(0, &[0xAB; PAGE_SIZE]).unwrap();
    map.truncate(0);
    let mut b = [1u8; PAGE_SIZE];
    held.read(0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0));
}
