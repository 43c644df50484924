//! Issue 10 review (break10): soundness probes from safe code.

use std::sync::{Arc, Mutex};
use std::thread;

use pagemap::{FrameId, FramePool, PageMap, ReadIo, SubmitStore, WriteIo, PAGE_SIZE};

/// Keeps the read request, so the test can fill the frame itself.
struct Stash(Mutex<Option<ReadIo>>);

impl SubmitStore for Stash {
    fn submit_read(&self, io: ReadIo) {
        *self.0.lock().unwrap() = Some(io);
    }
    fn submit_write(&self, io: WriteIo) {
        io.complete(Ok(()))
    }
}

/// `FramePool::read_page` is safe and takes any FrameId, so safe code can
/// read a LOADING frame while the store holds `&mut PageBuf` over it
/// (`ReadIo::buf`): an atomic read racing a non-atomic write. Run under
/// miri to see the data race reported.
#[test]
#[ignore = "demonstrates UB from safe code (run under miri)"]
fn safe_read_races_loading_frame() {
    let stash = Arc::new(Stash(Mutex::new(None)));
    let map = Arc::new(PageMap::with_submit_store(
        Arc::new(FramePool::new(1).unwrap()),
        stash.clone(),
    ));
    let loader = {
        let map = map.clone();
        thread::spawn(move || {
            let page = map.load(0).unwrap();
            let mut b = [0u8; 1];
            page.read(0, &mut b).unwrap();
            b[0]
        })
    };
    let mut io = loop {
        if let Some(io) = stash.0.lock().unwrap().take() {
            break io;
        }
        thread::yield_now();
    };
    // A made-up id: the pool has one frame, so it is the loading one.
    let id = FrameId::new(1).unwrap();
    assert_eq!(io.frame(), id);
    let pool = map.pool().clone();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; PAGE_SIZE];
        pool.read_page(id, &mut buf); // safe code
        buf[0]
    });
    io.buf().fill(7); // the store's "DMA": plain writes through &mut
    let _ = reader.join().unwrap();
    io.complete(Ok(()));
    assert_eq!(loader.join().unwrap(), 7);
}

/// Fills the frame inline, reading it meanwhile through the pool's safe
/// API, as any code holding the pool (or a made-up FrameId) can.
struct Aliaser(Mutex<Option<Arc<FramePool>>>);

impl SubmitStore for Aliaser {
    fn submit_read(&self, mut io: ReadIo) {
        let pool = self.0.lock().unwrap().clone().unwrap();
        let id = io.frame();
        let buf = io.buf();
        buf.fill(1);
        let mut copy = [0u8; PAGE_SIZE];
        pool.read_page(id, &mut copy); // safe: reads the frame `buf` borrows
        buf[0] = 2; // a write through the `&mut` after a foreign read
        io.complete(Ok(()));
    }
    fn submit_write(&self, io: WriteIo) {
        io.complete(Ok(()))
    }
}

/// The single-threaded form of the above: Tree Borrows reports the write
/// through `ReadIo::buf`'s `&mut` after safe code read the same memory.
#[test]
#[ignore = "demonstrates UB from safe code (run under miri)"]
fn safe_read_aliases_read_buffer() {
    let pool = Arc::new(FramePool::new(1).unwrap());
    let store = Arc::new(Aliaser(Mutex::new(Some(pool.clone()))));
    let map = PageMap::with_submit_store(pool, store);
    let page = map.load(0).unwrap();
    let mut b = [0u8; 2];
    page.read(0, &mut b).unwrap();
    assert_eq!(b, [2, 1]);
}

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
    let map = Arc::new(PageMap::new(
        Arc::new(FramePool::new(4).unwrap()),
        probe.clone(),
    ));
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

/// `FrameSource::free` (and `ShootdownBatch::defer_free_to`, which calls
/// it) is safe to call on any id. Two pools over one shared source (the
/// `Arc` impl invites sharing) then let safe code put a frame that pool A
/// has in use back on the free list, pool B hands it out (its own metadata
/// says free), and B's load overwrites A's cached page through `&mut`:
/// A's page changes under it. Under miri: a data race / aliasing report.
#[test]
#[ignore = "demonstrates a broken invariant from safe code"]
fn a_stray_source_free_hands_a_live_frame_to_another_pool() {
    use pagemap::{FrameSource, MemStore, RegionFrames, ShootdownBatch};
    let src = Arc::new(RegionFrames::heap(2).unwrap());
    let pool_a = Arc::new(FramePool::with_source(src.clone()).unwrap());
    let pool_b = Arc::new(FramePool::with_source(src.clone()).unwrap());
    let store_a = Arc::new(MemStore::new());
    let store_b = Arc::new(MemStore::new());
    let mut page = [0u8; PAGE_SIZE];
    page[0] = b'B';
    store_b.set_page(0, &page);
    let a = PageMap::new(pool_a, store_a);
    let b = PageMap::new(pool_b, store_b.clone());
    let pa = a.load(0).unwrap();
    pa.write(0, b"A").unwrap();
    // Safe code returns A's live frame to the shared source.
    let mut batch = ShootdownBatch::new();
    batch.defer_free_to(src.clone() as Arc<dyn FrameSource>, pa.frame());
    batch.flush();
    let pb = b.load(0).unwrap();
    let mut byte = [0u8; 1];
    pa.read(0, &mut byte).unwrap();
    assert_eq!(pb.frame(), pa.frame(), "B was handed A's frame");
    assert_eq!(&byte, b"A", "A's cached page was overwritten by B's load");
}
