//! Hole punch (issue 11, item 8) against a load refilling the range and
//! against a write-back in flight: when `punch_hole` returns no old byte is
//! in the cache or the store, and none can come back.

use std::sync::Arc;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom_tests::bytes::{FIRST, OLD};
use loom_tests::{check_quiescent, dirty, explore, page_prefix, spawn_with, Bound, Fixture};
use pagemap::{
    BackingStore, FramePool, MemStore, PageBuf, PageMap, PageSrc, StoreControl, StoreError,
    PAGE_SIZE,
};

const IDX: u64 = 1;
const PAGE: u64 = PAGE_SIZE as u64;

/// A [`MemStore`] (whose lock loom does not see) with a loom step inside
/// each call, so that loom can run other threads mid-call: a read copies,
/// then completes; a write snapshots the frame, then lands (as a device's
/// DMA reads early and completes late); a punch has a step before it.
struct SteppedStore {
    inner: MemStore,
    step: AtomicUsize,
}

impl SteppedStore {
    fn step(&self) {
        self.step.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether page `index` reads as zeroes.
    fn is_hole(&self, index: u64) -> bool {
        self.inner
            .page(index)
            .is_none_or(|p| p.iter().all(|&b| b == 0))
    }
}

impl BackingStore for SteppedStore {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        let r = self.inner.read_page(index, buf);
        self.step();
        r
    }

    fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError> {
        let mut snapshot = [0u8; PAGE_SIZE];
        src.copy_to(&mut snapshot);
        self.step();
        self.inner.set_page(index, &snapshot);
        Ok(())
    }
}

impl StoreControl for SteppedStore {
    fn punch_hole(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        self.step();
        self.inner.punch_hole(offset, len)
    }
}

/// A map over a [`SteppedStore`] whose page `IDX` holds `OLD`.
fn stepped(frames: usize) -> (Arc<SteppedStore>, Arc<PageMap>) {
    // The main thread's epoch handle first, as `Fixture::new` does.
    drop(Fixture::new(1));
    let store = Arc::new(SteppedStore {
        inner: MemStore::new(),
        step: AtomicUsize::new(0),
    });
    store.inner.set_page(IDX, &[OLD; PAGE_SIZE]);
    let pool = Arc::new(FramePool::new(frames).expect("pool"));
    let map = PageMap::new(pool, store.clone());
    (store, map)
}

/// A load of the page (a fault's miss path) races a punch of it. The punch
/// keeps misses out across its two halves (the invalidate lock), so right
/// after it returns the cache holds no `OLD` byte (a load between the
/// halves would have read the store's old bytes back in), and later loads
/// read zeroes. Kills H01.
#[test]
fn punch_vs_load_refilling() {
    explore(Bound::Env, || {
        let (store, map) = stepped(2);
        let loader = spawn_with(&map, |map| page_prefix(&map.load(IDX).unwrap(), 8)[0]);
        let report = map.punch_hole(IDX * PAGE, PAGE).unwrap();
        if let Some(p) = map.find(IDX).unwrap() {
            assert_eq!(
                page_prefix(&p, 8),
                vec![0; 8],
                "refilled with old bytes between the halves: {report:?}\n{}",
                map.dump()
            );
        }
        let saw = loader.join().unwrap();
        assert!(saw == OLD || saw == 0, "{saw:#x}");
        assert!(store.is_hole(IDX), "the store keeps old bytes");
        assert_eq!(page_prefix(&map.load(IDX).unwrap(), 8), vec![0; 8]);
        format!("loader_saw_old={}", saw == OLD)
    })
    // Loaded (and read) before the punch; loaded after it, or read after
    // the punch zeroed its page in place.
    .assert_seen(&["loader_saw_old=true", "loader_saw_old=false"]);
}

/// A write-back of the dirty page (`FIRST` over `OLD`) races a punch of it.
/// The punch waits for a write in flight (WRITEBACK) before zeroing and
/// punches the store last, so the store ends a hole whichever runs first,
/// and the page, if still cached, is zero and clean. Kills H02.
#[test]
fn punch_vs_writeback_in_flight() {
    explore(Bound::Env, || {
        let (store, map) = stepped(2);
        drop(dirty(&map, IDX, FIRST));
        let flusher = spawn_with(&map, |map| {
            let r = map.writeback(..);
            assert!(r.errors.is_empty());
            r.written
        });
        map.punch_hole(IDX * PAGE, PAGE).unwrap();
        let written = flusher.join().unwrap();
        assert!(
            store.is_hole(IDX),
            "a write of old bytes landed after the punch ({:x?})\n{}",
            store.inner.page(IDX).map(|p| p[..8].to_vec()),
            map.dump()
        );
        if let Some(p) = map.find(IDX).unwrap() {
            assert_eq!(page_prefix(&p, 8), vec![0; 8]);
            assert!(!p.is_dirty(), "the punch discarded the dirty data");
        }
        assert!(map.dirty_indices(..).is_empty());
        format!("written={written}")
    })
    // Written before the punch (then punched); found clean or gone.
    .assert_seen(&["written=1", "written=0"]);
}

/// The quiescent checks after a punch of a held page (zeroed in place) and
/// an unheld one (removed): no frame leaked, locked or counted twice.
#[test]
fn punch_leaves_the_map_quiescent() {
    loom_tests::model(|| {
        let fx = Fixture::with_page(4, IDX, OLD);
        fx.store_page(IDX + 1, OLD);
        let held = fx.map.load(IDX).unwrap();
        fx.cache(IDX + 1);
        let r = fx.map.punch_hole(IDX * PAGE, 2 * PAGE).unwrap();
        assert_eq!((r.zeroed, r.removed), (1, 1), "{r:?}");
        assert_eq!(page_prefix(&held, 8), vec![0; 8]);
        drop(held);
        check_quiescent(&fx);
    });
}
