//! Every error path: the error is typed, and nothing is lost or left locked.
// Uses the Flusher (a real thread), which the loom build leaves out.
#![cfg(not(pagemap_loom))]

use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use pagemap::{
    flags, BackingStore, Error, FramePool, MemStore, PageBuf, PageMap, StoreControl, StoreError,
    PAGE_SIZE,
};

fn map_with(frames: usize) -> (Arc<PageMap>, Arc<MemStore>) {
    let store = Arc::new(MemStore::new());
    let map = PageMap::new(Arc::new(FramePool::new(frames).unwrap()), store.clone());
    (map, store)
}

#[test]
fn pool_exhausted_is_an_error_and_changes_nothing() {
    let (map, _) = map_with(2);
    let a = map.load(1).unwrap();
    let b = map.load(2).unwrap();
    let before = map.cached_indices(..);
    assert!(matches!(
        map.load(3),
        Err(Error::PoolExhausted { capacity: 2, .. })
    ));
    assert_eq!(map.cached_indices(..), before);
    assert_eq!(map.nr_pages(), 2);
    // Held pages cannot be freed; released ones can, and then the load works.
    assert_eq!(map.free_unused().referenced, 2);
    drop((a, b));
    assert_eq!(map.free_unused().freed, 2);
    map.load(3).unwrap();
}

/// A store whose reads of one index block until released, then fail.
struct GatedStore {
    gate: Mutex<(bool, u32)>, // (released, readers inside)
    cv: Condvar,
    fail: bool,
}

impl BackingStore for GatedStore {
    fn read_page(&self, _index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        let mut g = self.gate.lock().unwrap();
        g.1 += 1;
        self.cv.notify_all();
        while !g.0 {
            g = self.cv.wait(g).unwrap();
        }
        if self.fail {
            return Err(StoreError::new(StoreError::EACCES));
        }
        buf.fill(0xab);
        Ok(())
    }
    fn write_page(&self, _index: u64, _src: pagemap::PageSrc<'_>) -> Result<(), StoreError> {
        Ok(())
    }
}

impl StoreControl for GatedStore {}

fn gated_load(fail: bool) {
    let store = Arc::new(GatedStore {
        gate: Mutex::new((false, 0)),
        cv: Condvar::new(),
        fail,
    });
    let map = PageMap::new(Arc::new(FramePool::new(4).unwrap()), store.clone());
    thread::scope(|s| {
        let loader = s.spawn(|| map.load(9).map(|p| p.frame()));
        // Wait until the loader is inside the read.
        {
            let mut g = store.gate.lock().unwrap();
            while g.1 == 0 {
                g = store.cv.wait(g).unwrap();
            }
        }
        let waiters: Vec<_> = (0..3)
            .map(|_| s.spawn(|| map.load(9).map(|p| p.frame())))
            .collect();
        // All three waiters hold the page and sleep on it.
        while map.holders(9) < 4 {
            thread::sleep(Duration::from_millis(1));
        }
        {
            let mut g = store.gate.lock().unwrap();
            g.0 = true;
            store.cv.notify_all();
        }
        let first = loader.join().unwrap();
        let rest: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(store.gate.lock().unwrap().1, 1, "exactly one read");
        if fail {
            assert!(matches!(first, Err(Error::Read { index: 9, .. })));
            for r in rest {
                match r {
                    Err(Error::Read { index: 9, source }) => {
                        assert_eq!(source.code(), StoreError::EACCES)
                    }
                    other => panic!("waiter got {other:?}"),
                }
            }
        } else {
            let f = first.unwrap();
            assert!(rest.into_iter().all(|r| r.unwrap() == f));
        }
    });
    // Nothing left locked, nobody holding it.
    assert_eq!(map.holders(9), 0);
    if fail {
        assert!(
            map.find(9).unwrap().is_none(),
            "a failed page is not up to date"
        );
        map.free_unused();
        assert_eq!(map.nr_pages(), 0);
        assert_eq!(map.pool().free_frames(), 4);
    } else {
        let p = map.find(9).unwrap().unwrap();
        assert_eq!(p.flags() & flags::LOCKED, 0);
        let mut b = [0u8; 1];
        p.read(100, &mut b).unwrap();
        assert_eq!(b[0], 0xab);
    }
}

#[test]
fn read_error_reaches_loader_and_every_waiter() {
    gated_load(true);
}

#[test]
fn concurrent_loaders_cause_one_read() {
    gated_load(false);
}

#[test]
fn read_error_then_retry_succeeds() {
    let (map, store) = map_with(4);
    store.fail_reads(5, true);
    assert!(matches!(map.load(5), Err(Error::Read { index: 5, .. })));
    assert_eq!(
        map.nr_pages(),
        0,
        "an unreferenced failed page is discarded"
    );
    assert_eq!(map.pool().free_frames(), 4);
    store.fail_reads(5, false);
    store.set_page(5, &[7; PAGE_SIZE]);
    let p = map.load(5).unwrap();
    let mut b = [0u8; 2];
    p.read(4094, &mut b).unwrap();
    assert_eq!(b, [7, 7]);
    assert_eq!(p.flags() & (flags::ERROR | flags::LOCKED), 0);
}

#[test]
fn write_error_in_free_unused_keeps_page_dirty_with_data() {
    let (map, store) = map_with(4);
    map.load(3).unwrap().write(10, b"precious").unwrap();
    map.load(4).unwrap(); // clean, unreferenced
    store.fail_writes(3, true);
    let r = map.free_unused();
    assert_eq!(r.freed, 1, "the clean page goes");
    assert_eq!(r.errors.len(), 1);
    assert!(matches!(&r.errors[0], Error::Write { index: 3, .. }));
    assert!(store.page(3).is_none());
    let p = map
        .find(3)
        .unwrap()
        .expect("page kept after a failed write");
    assert!(p.is_dirty());
    assert_eq!(map.dirty_indices(..), vec![3]);
    let mut b = [0u8; 8];
    p.read(10, &mut b).unwrap();
    assert_eq!(&b, b"precious");
    drop(p);
    store.fail_writes(3, false);
    let r = map.free_unused();
    assert_eq!((r.freed, r.written, r.errors.len()), (1, 1, 0));
    assert_eq!(&store.page(3).unwrap()[10..18], b"precious");
    assert_eq!(map.nr_pages(), 0);
}

#[test]
fn writeback_error_keeps_page_dirty() {
    let (map, store) = map_with(4);
    let p = map.load(1).unwrap();
    p.write(0, b"x").unwrap();
    store.fail_writes(1, true);
    let r = map.writeback(..);
    assert_eq!((r.written, r.errors.len()), (0, 1));
    assert!(p.is_dirty());
    store.fail_writes(1, false);
    assert_eq!(map.writeback(0..=1).written, 1);
    assert!(!p.is_dirty());
    assert!(map.dirty_indices(..).is_empty());
    assert_eq!(map.writeback(..).written, 0, "clean pages are not written");
}

#[test]
fn refcount_overflow_is_refused_past_max_holders() {
    let (map, _) = map_with(1);
    let first = map.load(0).unwrap();
    for _ in 1..pagemap::MAX_REFS {
        std::mem::forget(first.try_clone().unwrap());
    }
    assert_eq!(first.holders(), pagemap::MAX_REFS);
    assert!(matches!(
        first.try_clone(),
        Err(Error::RefcountOverflow { index: 0 })
    ));
    assert!(matches!(
        map.find(0),
        Err(Error::RefcountOverflow { index: 0 })
    ));
    assert!(matches!(
        map.load(0),
        Err(Error::RefcountOverflow { index: 0 })
    ));
    assert_eq!(first.holders(), pagemap::MAX_REFS, "nothing wrapped");
    drop(first);
    assert!(map.find(0).unwrap().is_some(), "a put makes room again");
    // The forgotten holders can never be put: leak the map rather than trip
    // its drop-time assertion.
    std::mem::forget(map);
}

#[test]
fn index_u64_max_and_neighbours_work() {
    let (map, store) = map_with(8);
    for (i, idx) in [u64::MAX, u64::MAX - 1, 0, 1 << 40, 1 << 63]
        .into_iter()
        .enumerate()
    {
        map.load(idx).unwrap().write(0, &[i as u8 + 1]).unwrap();
    }
    assert_eq!(
        map.cached_indices(..),
        vec![0, 1 << 40, 1 << 63, u64::MAX - 1, u64::MAX]
    );
    assert_eq!(map.cached_indices(u64::MAX..), vec![u64::MAX]);
    assert_eq!(map.next_present(u64::MAX), Some(u64::MAX));
    assert_eq!(
        map.dirty_indices((1 << 62)..),
        vec![1 << 63, u64::MAX - 1, u64::MAX]
    );
    let r = map.writeback(..);
    assert_eq!(r.written, 5);
    assert_eq!(store.page(u64::MAX).unwrap()[0], 1);
    assert_eq!(map.free_unused().freed, 5);
    assert_eq!(map.nr_pages(), 0);
    assert_eq!(map.memory().nodes, 0, "every node reclaimed");
    assert!(map.cached_indices(..).is_empty());
}

#[test]
fn load_nowait_never_blocks() {
    let (map, _) = map_with(2);
    assert!(matches!(
        map.load_nowait(4),
        Err(Error::WouldBlock { index: 4 })
    ));
    assert_eq!(map.nr_pages(), 0, "load_nowait does not insert");
    drop(map.load(4).unwrap());
    assert_eq!(map.load_nowait(4).unwrap().index(), 4);
}

#[test]
fn out_of_bounds_access_is_an_error_and_writes_nothing() {
    let (map, _) = map_with(1);
    let p = map.load(0).unwrap();
    assert!(matches!(
        p.write(PAGE_SIZE - 1, b"ab"),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(!p.is_dirty(), "a refused write dirties nothing");
    let mut b = [0u8; 2];
    assert!(matches!(
        p.read(usize::MAX - 1, &mut b),
        Err(Error::OutOfBounds { .. })
    ));
}

/// A store that cannot shrink.
struct NoShrink(MemStore);

impl BackingStore for NoShrink {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        self.0.read_page(index, buf)
    }
    fn write_page(&self, index: u64, buf: pagemap::PageSrc<'_>) -> Result<(), StoreError> {
        self.0.write_page(index, buf)
    }
}

impl StoreControl for NoShrink {
    fn set_size(&self, _: u64) -> Result<(), StoreError> {
        Err(StoreError::new(StoreError::EIO))
    }
}

#[test]
fn a_store_that_fails_to_shrink_is_reported_and_nothing_changes() {
    // The store is asked first: had the cache been cut alone, a later
    // extension would read the cut bytes back from the store.
    let map = PageMap::new(
        Arc::new(FramePool::new(4).unwrap()),
        Arc::new(NoShrink(MemStore::new())),
    );
    map.load(3).unwrap().write(0, b"x").unwrap();
    let r = map.truncate(2);
    assert_eq!(r.removed, 0, "{r:?}");
    assert!(
        matches!(r.errors[..], [Error::Truncate { end: 2, .. }]),
        "{r:?}"
    );
    let mut b = [0u8; 1];
    map.load(3).unwrap().read(0, &mut b).unwrap();
    assert_eq!(&b, b"x");
    assert_eq!(map.nr_pages(), 1);
    assert_eq!(map.end(), u64::MAX);
}

#[test]
fn the_flusher_reports_write_errors_and_keeps_the_page_dirty() {
    let (map, store) = map_with(4);
    map.load(1).unwrap().write(0, b"y").unwrap();
    store.fail_writes(1, true);
    let flusher = pagemap::Flusher::spawn(vec![map.clone()], Duration::from_millis(1));
    while flusher.report().errors == 0 {
        thread::sleep(Duration::from_millis(1));
    }
    store.fail_writes(1, false);
    let r = flusher.stop();
    assert!(
        matches!(r.last_error, Some(Error::Write { index: 1, .. })),
        "{r:?}"
    );
    // Kept dirty, then written once the store recovered (the last round).
    assert!(r.written >= 1, "{r:?}");
    assert_eq!(store.page(1).unwrap()[0], b'y');
    assert!(map.dirty_indices(..).is_empty());
}

#[test]
fn removal_with_a_huge_or_empty_range_changes_nothing_it_should_not() {
    let (map, _) = map_with(4);
    drop(map.load(u64::MAX).unwrap());
    drop(map.load(0).unwrap());
    let empty = map.remove(5..5);
    assert_eq!(empty.removed, 0);
    assert!(map.try_remove(u64::MAX..u64::MAX).unwrap().removed == 0);
    let r = map.remove(1..=u64::MAX);
    assert_eq!(r.removed, 1, "page u64::MAX removed, page 0 kept");
    assert_eq!(map.cached_indices(..), vec![0]);
}

/// A failing device does not make a report grow with the range: the first
/// MAX_REPORTED_ERRORS errors are kept, the rest counted; every page stays
/// dirty with its data and is written once the device works again.
#[test]
fn reports_keep_a_bounded_number_of_errors() {
    let n = pagemap::MAX_REPORTED_ERRORS as u64 + 36;
    let store = Arc::new(MemStore::new());
    let map = PageMap::new(Arc::new(FramePool::new(n as usize).unwrap()), store.clone());
    for i in 0..n {
        map.load(i).unwrap().write(0, &[i as u8 | 1]).unwrap();
        store.fail_writes(i, true);
    }
    let r = map.writeback(..);
    assert_eq!(r.errors.len(), pagemap::MAX_REPORTED_ERRORS);
    assert_eq!(r.errors_dropped, 36);
    assert_eq!(map.dirty_indices(..).len() as u64, n);
    let f = map.free_unused();
    assert_eq!((f.errors.len() as u64 + f.errors_dropped, f.freed), (n, 0));
    for i in 0..n {
        store.fail_writes(i, false);
    }
    assert_eq!(map.writeback(..).written, n);
    assert_eq!(store.page(n - 1).unwrap()[0], (n - 1) as u8 | 1);
}
