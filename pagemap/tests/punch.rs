//! Hole punch (issue 11, item 8): the range reads as zeroes afterwards,
//! from the cache and from the store, whatever loads, faults and
//! write-backs ran meanwhile; the size is unchanged; partial pages lose just
//! the punched bytes; a range past the end is clipped.
// Real threads and files, which the loom build leaves out.
#![cfg(not(pagemap_loom))]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use pagemap::{
    BackingStore, Error, FileStore, FramePool, MemStore, PageBuf, PageMap, PageSrc, StoreControl,
    StoreError, PAGE_SIZE,
};

const PAGE: u64 = PAGE_SIZE as u64;

/// A [`MemStore`] whose reads and writes take a while, so that a load or a
/// write-back is in flight across a punch more often than not.
struct Slow(MemStore);

impl BackingStore for Slow {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        // Read, then take a while to complete: the bytes are as of the start.
        let r = self.0.read_page(index, buf);
        thread::sleep(Duration::from_micros(20));
        r
    }

    fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError> {
        // The snapshot is the copy: take it, then wait before it "lands"
        // (as a device's DMA read early and its completion late would).
        let mut copy = [0u8; PAGE_SIZE];
        src.copy_to(&mut copy);
        // Longer than a punch: a write of old bytes not drained lands last.
        thread::sleep(Duration::from_micros(150));
        self.0.set_page(index, &copy);
        Ok(())
    }
}

impl StoreControl for Slow {
    fn punch_hole(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        // A real punch takes time too: the window between the halves.
        thread::sleep(Duration::from_micros(100));
        self.0.punch_hole(offset, len)
    }
}

fn seeded(pages: u64, byte: u8) -> Arc<Slow> {
    let store = Arc::new(Slow(MemStore::new()));
    for i in 0..pages {
        store.0.set_page(i, &[byte; PAGE_SIZE]);
    }
    store
}

fn first_byte(map: &PageMap, index: u64) -> u8 {
    let mut b = [0u8; 1];
    map.load(index).unwrap().read(0, &mut b).unwrap();
    b[0]
}

/// Pages of `0..pages` whose cached or stored bytes are not all zero.
fn stale_pages(map: &PageMap, store: &Slow, pages: u64) -> u64 {
    let mut stale = 0;
    for i in 0..pages {
        let mut b = [0u8; PAGE_SIZE];
        map.load(i).unwrap().read(0, &mut b).unwrap();
        let stored = store.0.page(i).is_some_and(|p| p.iter().any(|&x| x != 0));
        stale += u64::from(b.iter().any(|&x| x != 0) || stored);
    }
    stale
}

/// The first reproduction: loads (a fault's miss path is a load) refill the
/// range from the store while a punch runs. Before the fix the cache's half
/// and the store's half were separate calls, and a load between them read
/// the old bytes back into the cache: about 20 stale pages per few hundred
/// punches. Every load that starts after the punch returns must read zeroes,
/// and so must the cache and the store when the dust settles.
#[test]
fn punch_vs_loads_refilling_the_range_leaves_no_old_byte() {
    const PAGES: u64 = 4;
    let stale_after = AtomicU64::new(0);
    let mut stale = 0;
    for it in 0..300 {
        let store = seeded(PAGES, 0xAA);
        let map = PageMap::new(Arc::new(FramePool::new(16).unwrap()), store.clone());
        let punched = AtomicBool::new(false);
        let stop = AtomicBool::new(false);
        let start = Barrier::new(3);
        thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                while !stop.load(Ordering::Acquire) {
                    for i in 0..PAGES {
                        // Read before the load starts: a load begun after
                        // the punch returned must see the hole.
                        let after = punched.load(Ordering::Acquire);
                        let byte = first_byte(&map, i);
                        if after && byte != 0 {
                            stale_after.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
            s.spawn(|| {
                start.wait();
                while !stop.load(Ordering::Acquire) {
                    // Drop the clean pages, so that loads miss again.
                    map.invalidate(..);
                    thread::sleep(Duration::from_micros(50));
                }
            });
            start.wait();
            if it % 2 == 0 {
                // The other order: loads already in flight when we punch.
                thread::sleep(Duration::from_micros(30));
            }
            map.punch_hole(0, PAGES * PAGE).unwrap();
            punched.store(true, Ordering::Release);
            // What is cached right now must be zeroes (before the evictor
            // can drop a page refilled with old bytes).
            for i in 0..PAGES {
                if let Some(page) = map.find(i).unwrap() {
                    let mut b = [0u8; 1];
                    page.read(0, &mut b).unwrap();
                    if b[0] != 0 {
                        stale_after.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            thread::sleep(Duration::from_micros(100));
            stop.store(true, Ordering::Release);
        });
        stale += stale_pages(&map, &store, PAGES);
    }
    assert_eq!(stale, 0, "pages with old bytes after a punch");
    assert_eq!(
        stale_after.load(Ordering::Relaxed),
        0,
        "old bytes loaded after a punch"
    );
}

/// The second reproduction: a write-back whose snapshot was taken before the
/// punch lands after it. The punch drains write-backs of the range (their
/// WRITEBACK bit) before zeroing and punches the store last, so the store
/// ends zero whichever starts first; the dirty data is discarded.
#[test]
fn punch_vs_writeback_in_flight_leaves_the_store_zero() {
    const PAGES: u64 = 4;
    let mut stale = 0;
    for it in 0..300 {
        let store = seeded(PAGES, 0xAA);
        let map = PageMap::new(Arc::new(FramePool::new(16).unwrap()), store.clone());
        for i in 0..PAGES {
            map.load(i).unwrap().write(0, &[0xBB; PAGE_SIZE]).unwrap();
        }
        let start = Barrier::new(2);
        thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                if it % 2 == 1 {
                    thread::sleep(Duration::from_micros(30));
                }
                let r = map.writeback(..);
                assert!(r.errors.is_empty());
            });
            start.wait();
            if it % 2 == 0 {
                thread::sleep(Duration::from_micros(30));
            }
            map.punch_hole(0, PAGES * PAGE).unwrap();
        });
        stale += stale_pages(&map, &store, PAGES);
        assert!(map.dirty_indices(..).is_empty(), "the punch discarded them");
    }
    assert_eq!(stale, 0, "pages with old bytes after a punch");
}

fn map_with(frames: usize) -> (Arc<PageMap>, Arc<MemStore>) {
    let store = Arc::new(MemStore::new());
    let map = PageMap::new(Arc::new(FramePool::new(frames).unwrap()), store.clone());
    (map, store)
}

#[test]
fn partial_pages_lose_just_the_punched_bytes() {
    let (map, store) = map_with(8);
    // Pages 0..3 in the store; page 0 cached and dirty with other bytes,
    // page 2 not cached.
    for i in 0..3 {
        store.set_page(i, &[0x11; PAGE_SIZE]);
    }
    map.load(0).unwrap().write(0, &[0x22; PAGE_SIZE]).unwrap();
    map.load(1).unwrap();
    let held = map.load(1).unwrap(); // held: zeroed in place, not removed
    let r = map.punch_hole(1000, 2 * PAGE).unwrap(); // bytes 1000 .. 9192
    assert_eq!((r.zeroed, r.removed), (1, 0), "{r:?}");
    let mut b = [0u8; PAGE_SIZE];
    held.read(0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0), "the whole page in the middle");
    drop(held);
    map.load(0).unwrap().read(0, &mut b).unwrap();
    assert!(
        b[..1000].iter().all(|&x| x == 0x22),
        "before the hole: kept"
    );
    assert!(b[1000..].iter().all(|&x| x == 0), "the hole");
    assert_eq!(
        map.dirty_indices(..),
        vec![0],
        "still dirty: its bytes below"
    );
    let page2 = 2 * PAGE_SIZE;
    let tail = 9192 - page2;
    map.load(2).unwrap().read(0, &mut b).unwrap();
    assert!(
        b[..tail].iter().all(|&x| x == 0),
        "the hole, from the store"
    );
    assert!(b[tail..].iter().all(|&x| x == 0x11), "after the hole: kept");
    map.writeback(..);
    let p0 = store.page(0).unwrap();
    assert!(p0[..1000].iter().all(|&x| x == 0x22) && p0[1000..].iter().all(|&x| x == 0));
    // Inside one page.
    map.punch_hole(10, 20).unwrap();
    map.load(0).unwrap().read(0, &mut b).unwrap();
    assert_eq!((b[9], b[10], b[29], b[30]), (0x22, 0, 0, 0x22));
}

#[test]
fn punch_past_the_end_is_clipped_and_keeps_the_size() {
    let (map, store) = map_with(8);
    for i in 0..6 {
        store.set_page(i, &[0x33; PAGE_SIZE]);
    }
    map.truncate(4);
    map.load(3).unwrap();
    let r = map.punch_hole(2 * PAGE, u64::MAX).unwrap();
    assert_eq!(r.removed, 1, "page 3; nothing beyond the end: {r:?}");
    assert!(matches!(
        map.load(4),
        Err(Error::BeyondEof { index: 4, end: 4 })
    ));
    assert_eq!(first_byte(&map, 1), 0x33);
    assert_eq!((first_byte(&map, 2), first_byte(&map, 3)), (0, 0));
    assert_eq!(map.end(), 4, "the size is unchanged");
    // A range wholly past the end does nothing.
    let r = map.punch_hole(10 * PAGE, PAGE).unwrap();
    assert_eq!((r.removed, r.zeroed), (0, 0));
    assert_eq!(map.punch_hole(0, 0).unwrap().removed, 0, "empty");
}

/// A store without `punch_hole`: the typed error, after the cache's half.
#[test]
fn a_store_that_cannot_punch_is_a_typed_error() {
    struct NoPunch(MemStore);
    impl BackingStore for NoPunch {
        fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
            self.0.read_page(index, buf)
        }
        fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError> {
            self.0.write_page(index, src)
        }
    }

    impl StoreControl for NoPunch {}
    let map = PageMap::new(
        Arc::new(FramePool::new(4).unwrap()),
        Arc::new(NoPunch(MemStore::new())),
    );
    map.load(0).unwrap().write(0, b"x").unwrap();
    match map.punch_hole(0, PAGE) {
        Err(Error::Punch {
            offset: 0,
            len: PAGE,
            source,
        }) => assert_eq!(source.code(), StoreError::EOPNOTSUPP),
        other => panic!("{other:?}"),
    }
}

#[test]
fn file_store_punches_a_real_file_and_keeps_its_size() {
    let path = std::env::temp_dir().join(format!("pagemap-punch-{}", std::process::id()));
    let len = 5 * PAGE_SIZE + 100;
    std::fs::write(&path, vec![0x5Au8; len]).unwrap();
    let store = Arc::new(FileStore::open(&path).unwrap());
    // The store alone: a hole inside, and one reaching past the end.
    store.punch_hole(100, PAGE + 50).unwrap();
    store.punch_hole(5 * PAGE + 90, 1000).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), len, "size unchanged");
    assert!(bytes[..100].iter().all(|&x| x == 0x5A));
    assert!(bytes[100..PAGE_SIZE + 150].iter().all(|&x| x == 0));
    assert!(bytes[PAGE_SIZE + 150..5 * PAGE_SIZE + 90]
        .iter()
        .all(|&x| x == 0x5A));
    assert!(bytes[5 * PAGE_SIZE + 90..].iter().all(|&x| x == 0));
    // Through a page map, with a page cached and dirty in the hole.
    let map = PageMap::new(Arc::new(FramePool::new(8).unwrap()), store.clone());
    map.load(3).unwrap().write(0, &[0x77; 8]).unwrap();
    map.punch_hole(2 * PAGE, 2 * PAGE).unwrap();
    assert!(map.writeback(..).errors.is_empty());
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), len, "size unchanged");
    assert!(bytes[2 * PAGE_SIZE..4 * PAGE_SIZE].iter().all(|&x| x == 0));
    assert!(bytes[4 * PAGE_SIZE..5 * PAGE_SIZE]
        .iter()
        .all(|&x| x == 0x5A));
    assert_eq!(first_byte(&map, 3), 0);
    drop(map);
    std::fs::remove_file(&path).unwrap();
}

/// A byte-granular size: the punch is clipped there, the last page's part
/// of it counts as whole (its bytes past the size are not file data), and
/// the size does not move.
#[test]
fn punch_is_clipped_at_a_byte_size() {
    let store = Arc::new(MemStore::with_size(10_000));
    for i in 0..3 {
        store.set_page(i, &[0x44; PAGE_SIZE]);
    }
    let map = PageMap::new(Arc::new(FramePool::new(8).unwrap()), store.clone());
    map.load(2).unwrap();
    let r = map.punch_hole(5_000, 1 << 20).unwrap();
    assert_eq!(r.removed, 1, "page 2, the last: {r:?}");
    assert_eq!(map.size(), 10_000, "the size is unchanged");
    let mut b = [0u8; PAGE_SIZE];
    map.load(1).unwrap().read(0, &mut b).unwrap();
    let at = 5_000 - PAGE_SIZE;
    assert!(b[..at].iter().all(|&x| x == 0x44) && b[at..].iter().all(|&x| x == 0));
    map.load(2).unwrap().read(0, &mut b).unwrap();
    let valid = 10_000 - 2 * PAGE_SIZE;
    assert!(b[..valid].iter().all(|&x| x == 0), "the file's bytes of it");
    assert!(map.load(3).is_err(), "still past the end");
}
