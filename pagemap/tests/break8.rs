//! Attempts to break the issue 8 fix at the page-map level, through the
//! public API (from a review that tried to break it). Each test is bounded
//! in time.

use std::sync::Arc;
use std::thread;
use std::time::Instant;

use pagemap::{FramePool, MemStore, PageMap, PAGE_SIZE};

fn map(frames: usize) -> (Arc<PageMap>, Arc<MemStore>) {
    let store = Arc::new(MemStore::new());
    let map = PageMap::new(Arc::new(FramePool::new(frames).unwrap()), store.clone());
    (map, store)
}

/// A page held across truncate used to stay in the map at its old index
/// (zeroed), so a write through the held reference after truncate returned
/// became file data once the file grew again. Now the page leaves the cache
/// (detached): `find` does not return it, the write is refused, and page 5
/// reads as zeroes after the file grows (issue 11).
#[test]
fn a_write_through_a_reference_held_across_truncate_does_not_reappear() {
    let (map, store) = map(8);
    store.set_page(5, &[0x11; PAGE_SIZE]);
    let held = map.load(5).unwrap();
    let r = map.truncate(3);
    assert_eq!(r.zeroed, 1);
    let mut notes = Vec::new();
    if let Ok(Some(p)) = map.find(5) {
        notes.push(format!(
            "find(5) after truncate(3) returned the cut page (frame {:?}) though load(5) says {:?}",
            p.frame(),
            map.load(5).err()
        ));
    }
    // A write that starts after truncate returned.
    assert!(matches!(
        held.write(0, b"ghost"),
        Err(pagemap::Error::Detached { index: 5 })
    ));
    drop(held);
    let wb = map.writeback(..);
    notes.push(format!(
        "sync after the write: {wb:?} (beyond the end: dropped)"
    ));
    map.truncate(10); // the file grows again: page 5 must read as zeroes
    let mut b = [0u8; 5];
    map.load(5).unwrap().read(0, &mut b).unwrap();
    let cached = b;
    let dirty = map.dirty_indices(..);
    map.free_unused();
    map.load(5).unwrap().read(0, &mut b).unwrap();
    let reloaded = b;
    eprintln!("{}", notes.join("\n"));
    assert_eq!(
        (&cached, &reloaded),
        (&[0u8; 5], &[0u8; 5]),
        "after truncate(3) and truncate(10), page 5 read {:?} from the cache (clean: dirty \
         pages {dirty:?}) and {:?} after reclaim: the write through a reference held across \
         the truncate became (unstable) file data.\n{}",
        String::from_utf8_lossy(&cached),
        String::from_utf8_lossy(&reloaded),
        notes.join("\n")
    );
}

/// The library's reserve of short holds (MAX_REFS..MAX_HELD) is reachable
/// by any user through the public `find_frame`; once a user has spent it,
/// truncate (and munmap, msync, writeback) panic instead of completing.
#[test]
fn truncate_completes_after_a_user_took_holds_through_find_frame() {
    let (map, _) = map(8);
    let frame = map.load(0).unwrap().frame();
    let t = Instant::now();
    let mut n = 0u64;
    while n < pagemap::MAX_HELD {
        match map.find_frame(0, frame) {
            Some(p) => std::mem::forget(p),
            None => break,
        }
        n += 1;
    }
    eprintln!("{n} holds taken through find_frame in {:?}", t.elapsed());
    assert!(n > pagemap::MAX_REFS, "find_frame went past the user limit");
    let m = map.clone();
    let r = thread::spawn(move || m.truncate(0).zeroed).join();
    // The page stays held for good: leak the map (its drop would assert).
    std::mem::forget(map);
    assert!(
        r.is_ok(),
        "truncate(0) panicked after a user took {n} holds through the public find_frame \
         (the reserve meant for munmap/msync/truncate)"
    );
}
