//! Writeback of mapped pages against a hand-driven `Mapper`: the dirty bit a
//! mapping hands over becomes the page's DIRTY flag only after the
//! writeback's shootdown, so an overlapping writeback cannot clean the page
//! while a CPU may still write through a stale translation (the lost write
//! the soak test found).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use pagemap::{
    FlushTarget, FrameId, FramePool, Harvest, Mapper, MemStore, PageMap, ShootdownBatch, Victims,
};

/// A mapping of page 0 whose PTE is dirty once. Its `clean` hands the dirty
/// bit over, then (before returning, i.e. before the caller's shootdown)
/// lets another writeback run and a "CPU" write through its stale entry:
/// bytes land in the page without any dirty bit.
struct Scripted {
    map: Mutex<Weak<PageMap>>,
    pte_dirty: AtomicBool,
    nested: AtomicBool,
    flushes: Arc<Space>,
}

struct Space(AtomicU64);

impl FlushTarget for Space {
    fn id(&self) -> u64 {
        1
    }
    fn flush(&self, _: Option<(u64, u64)>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Mapper for Scripted {
    fn file_pages(&self) -> (u64, u64) {
        (0, 0)
    }
    fn is_pinned(&self) -> bool {
        false
    }
    fn revoke(&self, _: &Victims, _: &mut ShootdownBatch) {}
    fn reap(&self, _: &Victims, _: &mut dyn FnMut(u64, FrameId)) {}
    fn zap(&self, _: u64, _: u64, _: &mut ShootdownBatch) {}
    fn clean(&self, _: u64, _: u64, batch: &mut ShootdownBatch, harvest: &mut Harvest<'_>) {
        let map = self.map.lock().unwrap().upgrade().unwrap();
        if !self.pte_dirty.swap(false, Ordering::SeqCst) {
            return;
        }
        let page = map.find(0).unwrap().unwrap();
        harvest.dirty(harvest.hold(0, page.frame()).unwrap());
        batch.add(self.flushes.clone(), 0, 0);
        if !self.nested.swap(true, Ordering::SeqCst) {
            // Another writeback overlaps ours, between our harvest and our
            // shootdown ...
            map.writeback(..);
            // ... and then the CPU writes through the entry our shootdown
            // has not yet dropped (a dirty TLB entry sets no PTE bit).
            page.write(0, b"late").unwrap();
            page.clear_dirty();
        }
    }
}

#[test]
fn a_harvested_dirty_bit_counts_only_after_the_shootdown() {
    let store = Arc::new(MemStore::new());
    let map = PageMap::new(Arc::new(FramePool::new(4).unwrap()), store.clone());
    drop(map.load(0).unwrap());
    let space = Arc::new(Space(AtomicU64::new(0)));
    let mapper = Arc::new(Scripted {
        map: Mutex::new(Arc::downgrade(&map)),
        pte_dirty: AtomicBool::new(true),
        nested: AtomicBool::new(false),
        flushes: space.clone(),
    });
    let id = map.add_mapping(mapper.clone());
    let r = map.writeback(..);
    assert_eq!(space.0.load(Ordering::SeqCst), 1, "one shootdown");
    assert_eq!((r.harvested, r.written), (1, 1), "{r:?}");
    // Marked dirty only after the shootdown, so the page was still dirty
    // for this writeback's tagging, after the late write: it wrote that.
    assert_eq!(&store.page(0).unwrap()[..4], b"late");
    assert!(map.dirty_indices(..).is_empty());
    map.remove_mapping(id);
}
