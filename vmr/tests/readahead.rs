//! Faults in a region with sequential advice read ahead: one store I/O per
//! window of pages instead of one per page.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pagemap::{BackingStore, MemStore, PageBuf, PageSrc, StoreControl, StoreError, PAGE_SIZE};
use vmr::{Advice, MapFlags, MapRequest, Prot};

#[allow(dead_code)]
mod common;
use common::{Rig, PAGE};

/// A memory store that counts its single-page and vectored reads.
#[derive(Default)]
struct Counting {
    mem: MemStore,
    singles: AtomicU64,
    vectored: AtomicU64,
}

impl BackingStore for Counting {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        self.singles.fetch_add(1, Ordering::Relaxed);
        self.mem.read_page(index, buf)
    }
    fn read_pages(&self, first: u64, bufs: &mut [&mut PageBuf]) -> Result<(), StoreError> {
        self.vectored.fetch_add(1, Ordering::Relaxed);
        for (i, buf) in bufs.iter_mut().enumerate() {
            self.mem.read_page(first + i as u64, buf)?;
        }
        Ok(())
    }
    fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError> {
        self.mem.write_page(index, src)
    }
}

impl StoreControl for Counting {}

fn scan(advice: Advice) -> (Arc<Counting>, u64, u64) {
    let store = Arc::new(Counting::default());
    for i in 0..64u64 {
        store.mem.set_page(i, &[i as u8 + 1; PAGE_SIZE]);
    }
    let rig = Rig::with_store(128, 1, store.clone());
    let space = rig.space();
    let va = space
        .mmap(MapRequest {
            advice,
            ..rig.request(64, Prot::READ, MapFlags::SHARED)
        })
        .unwrap();
    for i in 0..64u64 {
        assert_eq!(
            rig.read_byte(0, &space, va + i * PAGE).unwrap(),
            i as u8 + 1
        );
    }
    let stats = space.fault_stats();
    let major = stats.major.load(Ordering::Relaxed);
    let ahead = stats.readahead.load(Ordering::Relaxed);
    (store, major, ahead)
}

#[test]
fn a_sequential_scan_reads_one_window_per_io() {
    let (store, major, ahead) = scan(Advice::Sequential);
    // 64 pages, windows of 32 from each miss: two vectored reads, no
    // single-page read, two faults that blocked.
    assert_eq!(Advice::Sequential.readahead(), 32);
    assert_eq!(store.vectored.load(Ordering::Relaxed), 2);
    assert_eq!(store.singles.load(Ordering::Relaxed), 0);
    assert_eq!(major, 2);
    assert_eq!(ahead, 64);
}

#[test]
fn without_sequential_advice_each_miss_reads_its_page() {
    let (store, major, ahead) = scan(Advice::Random);
    assert_eq!(store.vectored.load(Ordering::Relaxed), 0);
    assert_eq!(store.singles.load(Ordering::Relaxed), 64);
    assert_eq!((major, ahead), (64, 0));
}

#[test]
fn readahead_stops_at_the_region_end() {
    let store = Arc::new(Counting::default());
    let rig = Rig::with_store(128, 1, store.clone());
    let space = rig.space();
    // Pages 0..10 of the file, sequential: one window, clipped to 10 pages.
    let va = space
        .mmap(MapRequest {
            advice: Advice::Sequential,
            ..rig.request(10, Prot::READ, MapFlags::SHARED)
        })
        .unwrap();
    rig.read_byte(0, &space, va).unwrap();
    assert_eq!(rig.file.nr_pages(), 10);
    assert_eq!(store.vectored.load(Ordering::Relaxed), 1);
}

/// A store that can address 16 TiB (ext4's largest file).
struct Limited(MemStore);

impl BackingStore for Limited {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        self.0.read_page(index, buf)
    }
    fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError> {
        self.0.write_page(index, src)
    }
}

impl StoreControl for Limited {
    fn max_size(&self) -> u64 {
        1 << 44
    }
}

#[test]
fn a_fault_past_the_stores_max_size_is_a_typed_error() {
    let rig = Rig::with_store(8, 1, Arc::new(Limited(MemStore::new())));
    let space = rig.space();
    for advice in [Advice::Normal, Advice::Sequential] {
        let va = space
            .mmap(MapRequest {
                pgoff: 1 << 40,
                advice,
                ..rig.request(2, Prot::READ, MapFlags::SHARED)
            })
            .unwrap();
        match rig.read_byte(0, &space, va) {
            Err(vmr::Fault::Io {
                source: pagemap::Error::BeyondMaxSize { index, max_size },
                ..
            }) => assert_eq!((index, max_size), (1 << 40, 1 << 44)),
            r => panic!("{r:?}"),
        }
    }
    assert_eq!(rig.file.nr_pages(), 0);
}
