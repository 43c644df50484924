//! Issue 10 review (break10): probes from safe code. Two of its findings
//! are now compile errors instead of tests: `FramePool::read`/`read_page`
//! are `unsafe` (safe code could read a frame a store was filling through
//! `&mut`), and so are `FrameSource::free` and
//! `ShootdownBatch::defer_free_to` (safe code could put back a frame a pool
//! still used); see their `compile_fail` examples.

use std::sync::{Arc, Mutex};

use pagemap::{FrameId, FramePool, PageMap};

/// Writes pages into a MemStore, and records whether the map's remover
/// lock was free while it did (a `try_remove` of an empty range of its map).
struct Probe {
    mem: pagemap::MemStore,
    map: std::sync::OnceLock<std::sync::Weak<PageMap>>,
    busy: Mutex<Vec<bool>>,
}

impl pagemap::BackingStore for Probe {
    fn read_page(&self, index: u64, buf: &mut pagemap::PageBuf) -> Result<(), pagemap::StoreError> {
        self.mem.read_page(index, buf)
    }
    fn write_page(&self, index: u64, src: pagemap::PageSrc<'_>) -> Result<(), pagemap::StoreError> {
        if let Some(map) = self.map.get().and_then(|m| m.upgrade()) {
            let busy = matches!(map.try_remove(1000..1001), Err(pagemap::Error::Busy));
            self.busy.lock().unwrap().push(busy);
        }
        self.mem.write_page(index, src)
    }
}

impl pagemap::StoreControl for Probe {}

/// The store docs said the page map holds none of its locks across a
/// store call; a removal's write-back (pass 5) runs under the remover lock,
/// as the Mapper docs say, so a store must not call remove, truncate,
/// invalidate or destroy on the same map from its write (it would deadlock).
#[test]
fn removal_writes_back_under_the_remover_lock() {
    let probe = Arc::new(Probe {
        mem: pagemap::MemStore::new(),
        map: std::sync::OnceLock::new(),
        busy: Mutex::new(Vec::new()),
    });
    let map = PageMap::new(Arc::new(FramePool::new(4).unwrap()), probe.clone());
    probe.map.set(Arc::downgrade(&map)).unwrap();
    map.load(0).unwrap().write(0, b"x").unwrap();
    map.writeback(..);
    map.load(1).unwrap().write(0, b"y").unwrap();
    let report = map.remove(..);
    assert_eq!(report.written, 1);
    // Plain writeback: remover lock free; removal's write-back: held.
    assert_eq!(*probe.busy.lock().unwrap(), vec![false, true]);
}

/// A mapper that maps nothing (only its range matters here).
struct Range(u64, u64);

impl pagemap::Mapper for Range {
    fn file_pages(&self) -> (u64, u64) {
        (self.0, self.1)
    }
    fn is_pinned(&self) -> bool {
        false
    }
    fn revoke(&self, _: &pagemap::Victims, _: &mut pagemap::ShootdownBatch) {}
    fn reap(&self, _: &pagemap::Victims, _: &mut dyn FnMut(u64, FrameId)) {}
    fn clean(&self, _: u64, _: u64, _: &mut pagemap::ShootdownBatch, _: &mut pagemap::Harvest<'_>) {
    }
    fn zap(&self, _: u64, _: u64, _: &mut pagemap::ShootdownBatch) {}
}

/// A MappingId names a mapping of one page map: handed to another map's
/// `remove_mapping` it must not unregister that map's mapping (whose
/// entries removal would then no longer revoke, freeing frames still
/// mapped). Both maps number their first mapping alike, so before the fix
/// map B gave up its own mapping for map A's id.
#[test]
fn another_maps_mapping_id_is_unknown() {
    let a = PageMap::new(
        Arc::new(FramePool::new(1).unwrap()),
        Arc::new(pagemap::MemStore::new()),
    );
    let b = PageMap::new(
        Arc::new(FramePool::new(1).unwrap()),
        Arc::new(pagemap::MemStore::new()),
    );
    let id_a = a.add_mapping(Arc::new(Range(0, 9)));
    let id_b = b.add_mapping(Arc::new(Range(0, 9)));
    assert!(
        b.remove_mapping(id_a).is_none(),
        "map B removed its mapping for A's id"
    );
    assert_eq!(b.nr_mappings(), 1);
    assert!(b.remove_mapping(id_b).is_some());
    assert!(a.remove_mapping(id_a).is_some());
    // Stale ids: already removed.
    assert!(a.remove_mapping(id_a).is_none());
    assert!(b.remove_mapping(id_b).is_none());
}
