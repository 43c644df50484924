//! Batched I/O: write-back extents, readahead windows, the vectored
//! `FileStore`, and errors that keep their facts (the errno, the store's
//! largest file).
#![cfg(not(pagemap_loom))]

use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use pagemap::{
    BackingStore, Error, FileStore, FramePool, MemStore, PageBuf, PageMap, PageSrc, StoreControl,
    StoreError, MAX_EXTENT, PAGE_SIZE,
};

/// A memory store that records its calls: `(first, pages)` of each
/// vectored call, and the count of single-page ones.
#[derive(Default)]
struct Counting {
    mem: MemStore,
    writes: Mutex<Vec<(u64, usize)>>,
    reads: Mutex<Vec<(u64, usize)>>,
    single_writes: Mutex<u64>,
    single_reads: Mutex<u64>,
    max_size: Option<u64>,
}

impl BackingStore for Counting {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        *self.single_reads.lock().unwrap() += 1;
        self.mem.read_page(index, buf)
    }
    fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError> {
        *self.single_writes.lock().unwrap() += 1;
        self.mem.write_page(index, src)
    }
    fn write_pages(&self, first: u64, srcs: &[PageSrc<'_>]) -> Result<(), StoreError> {
        self.writes.lock().unwrap().push((first, srcs.len()));
        self.mem.write_pages(first, srcs)
    }
    fn read_pages(&self, first: u64, bufs: &mut [&mut PageBuf]) -> Result<(), StoreError> {
        self.reads.lock().unwrap().push((first, bufs.len()));
        self.mem.read_pages(first, bufs)
    }
}

impl StoreControl for Counting {
    fn max_size(&self) -> u64 {
        self.max_size.unwrap_or(u64::MAX)
    }

    fn size(&self) -> Result<Option<u64>, StoreError> {
        self.mem.size()
    }

    fn set_size(&self, bytes: u64) -> Result<(), StoreError> {
        self.mem.set_size(bytes)
    }
}

fn counting(frames: usize) -> (Arc<PageMap>, Arc<Counting>) {
    let store = Arc::new(Counting::default());
    let map = PageMap::new(Arc::new(FramePool::new(frames).unwrap()), store.clone());
    (map, store)
}

fn dirty(map: &PageMap, index: u64) {
    map.load(index)
        .unwrap()
        .write(0, &(index as u32).to_le_bytes())
        .unwrap();
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pagemap-batched-{name}-{}", std::process::id()))
}

#[test]
fn one_write_pages_per_contiguous_dirty_run() {
    let (map, store) = counting(256);
    for i in (0..10).chain(20..25).chain([100]).chain(200..200 + 100) {
        dirty(&map, i);
    }
    let r = map.writeback(..);
    assert!(r.errors.is_empty());
    assert_eq!(r.written, 10 + 5 + 1 + 100);
    assert_eq!(
        *store.writes.lock().unwrap(),
        vec![(0, 10), (20, 5), (100, 1), (200, MAX_EXTENT), (264, 36)]
    );
    assert_eq!(*store.single_writes.lock().unwrap(), 0);
    for i in [0, 9, 24, 100, 299] {
        assert_eq!(store.mem.page(i).unwrap()[..4], (i as u32).to_le_bytes());
    }
    // Nothing dirty is left: a second pass writes nothing.
    assert_eq!(map.writeback(..).written, 0);
    // Store calls per page of a 100-page sequential dirty run: 2 / 100
    // (one pwritev each for a FileStore).
    assert_eq!(store.writes.lock().unwrap().len(), 5);
}

#[test]
fn a_clean_page_splits_a_run() {
    let (map, store) = counting(16);
    for i in 0..6 {
        dirty(&map, i);
    }
    map.writeback(3..=3);
    store.writes.lock().unwrap().clear();
    map.writeback(..);
    assert_eq!(*store.writes.lock().unwrap(), vec![(0, 3), (4, 2)]);
}

#[test]
fn a_failed_extent_keeps_only_the_refused_pages_dirty() {
    let (map, store) = counting(16);
    for i in 0..10 {
        dirty(&map, i);
    }
    store.mem.fail_writes(5, true);
    let r = map.writeback(..);
    assert_eq!(r.written, 9);
    assert_eq!(r.errors.len(), 1);
    assert!(matches!(
        r.errors[0],
        Error::Write { index: 5, source } if source.code() == StoreError::EIO
    ));
    assert_eq!(map.next_dirty(0), Some(5));
    assert_eq!(map.next_dirty(6), None);
    store.mem.fail_writes(5, false);
    assert_eq!(map.writeback(..).written, 1);
    assert_eq!(store.mem.page(5).unwrap()[0], 5);
}

#[test]
fn one_read_pages_per_readahead_window() {
    let (map, store) = counting(256);
    for i in 0..200u64 {
        store.mem.set_page(i, &[i as u8; PAGE_SIZE]);
    }
    assert_eq!(map.readahead(0, 32).unwrap(), 32);
    assert_eq!(*store.reads.lock().unwrap(), vec![(0, 32)]);
    // Every page is up to date with its bytes, and unreferenced.
    for i in 0..32 {
        let p = map.find(i).unwrap().expect("read ahead");
        let mut b = [0u8; 1];
        p.read(100, &mut b).unwrap();
        assert_eq!(b[0], i as u8);
    }
    assert_eq!(*store.single_reads.lock().unwrap(), 0);
    // Stops at the first cached page: 40 is cached, so 32..40 only.
    drop(map.load(40).unwrap());
    store.reads.lock().unwrap().clear();
    assert_eq!(map.readahead(32, 32).unwrap(), 8);
    assert_eq!(*store.reads.lock().unwrap(), vec![(32, 8)]);
    // A cached first page: nothing.
    assert_eq!(map.readahead(40, 32).unwrap(), 0);
    // Windows beyond MAX_EXTENT are split.
    store.reads.lock().unwrap().clear();
    assert_eq!(map.readahead(41, 100).unwrap(), 100);
    assert_eq!(
        *store.reads.lock().unwrap(),
        vec![(41, MAX_EXTENT), (41 + MAX_EXTENT as u64, 100 - MAX_EXTENT)]
    );
}

#[test]
fn readahead_stops_at_the_end_and_when_the_pool_is_out() {
    let (map, _) = counting(8);
    map.truncate(5);
    assert_eq!(map.readahead(2, 32).unwrap(), 3);
    assert_eq!(map.readahead(5, 32).unwrap(), 0, "at the end");
    let (map, _) = counting(4);
    let held = map.load(100).unwrap();
    assert_eq!(map.readahead(0, 32).unwrap(), 3, "three free frames");
    assert_eq!(map.pool().free_frames(), 0);
    // A full pool: readahead reclaims the unreferenced pages (0..3, read
    // ahead and never used), never the held one.
    assert_eq!(map.readahead(10, 32).unwrap(), 3);
    assert_eq!(map.cached_indices(..), vec![10, 11, 12, 100]);
    // With nothing to reclaim (every frame held), it reads nothing.
    let more: Vec<_> = (10..13).map(|i| map.load(i).unwrap()).collect();
    assert_eq!(map.readahead(20, 32).unwrap(), 0);
    drop((held, more));
}

/// A store whose vectored reads block until released, then succeed or fail.
struct Gated {
    gate: Mutex<(bool, u32)>, // (released, readers inside)
    cv: Condvar,
    fail: Option<i32>,
}

impl Gated {
    fn new(fail: Option<i32>) -> Arc<Self> {
        Arc::new(Gated {
            gate: Mutex::new((false, 0)),
            cv: Condvar::new(),
            fail,
        })
    }
    fn wait_inside(&self) {
        let mut g = self.gate.lock().unwrap();
        while g.1 == 0 {
            g = self.cv.wait(g).unwrap();
        }
    }
    fn release(&self) {
        self.gate.lock().unwrap().0 = true;
        self.cv.notify_all();
    }
    fn pass(&self) -> Result<(), StoreError> {
        let mut g = self.gate.lock().unwrap();
        g.1 += 1;
        self.cv.notify_all();
        while !g.0 {
            g = self.cv.wait(g).unwrap();
        }
        match self.fail {
            Some(code) => Err(StoreError::new(code)),
            None => Ok(()),
        }
    }
}

impl BackingStore for Gated {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        self.read_pages(index, &mut [buf])
    }
    fn read_pages(&self, first: u64, bufs: &mut [&mut PageBuf]) -> Result<(), StoreError> {
        self.pass()?;
        for (i, b) in bufs.iter_mut().enumerate() {
            b.fill(first as u8 + i as u8);
        }
        Ok(())
    }
    fn write_page(&self, _index: u64, _src: PageSrc<'_>) -> Result<(), StoreError> {
        Ok(())
    }
}

impl StoreControl for Gated {}

/// Loaders of pages being read ahead wait for that read and get its
/// outcome: the bytes, or the store's errno.
fn readahead_with_waiters(fail: Option<i32>) {
    let store = Gated::new(fail);
    let map = PageMap::new(Arc::new(FramePool::new(16).unwrap()), store.clone());
    thread::scope(|s| {
        let ahead = s.spawn(|| map.readahead(0, 8));
        store.wait_inside();
        let waiters: Vec<_> = [0u64, 3, 7]
            .into_iter()
            .map(|i| {
                let map = &map;
                s.spawn(move || {
                    map.load(i).map(|p| {
                        let mut b = [0u8; 1];
                        p.read(0, &mut b).unwrap();
                        b[0]
                    })
                })
            })
            .collect();
        // The waiters are asleep on the pages' locks (no second read).
        thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(store.gate.lock().unwrap().1, 1);
        store.release();
        let ahead = ahead.join().unwrap();
        for (w, i) in waiters.into_iter().zip([0u8, 3, 7]) {
            match (w.join().unwrap(), fail) {
                (Ok(b), None) => assert_eq!(b, i),
                (Err(e @ Error::Read { .. }), Some(code)) => {
                    // The store's errno, all the way to io::Error.
                    assert!(matches!(e, Error::Read { source, .. } if source.code() == code));
                    assert_eq!(std::io::Error::from(e).raw_os_error(), Some(code));
                }
                (r, _) => panic!("waiter of page {i}: {r:?}"),
            }
        }
        match (ahead, fail) {
            (Ok(8), None) => {}
            (Err(Error::Read { index: 0, source }), Some(code)) => {
                assert_eq!(source.code(), code)
            }
            (r, _) => panic!("readahead: {r:?}"),
        }
    });
}

#[test]
fn readahead_waiters_see_the_pages() {
    readahead_with_waiters(None);
}

#[test]
fn readahead_waiters_see_the_errno() {
    readahead_with_waiters(Some(StoreError::EIO));
    readahead_with_waiters(Some(StoreError::ENOSPC));
}

#[test]
fn load_waiters_of_a_failed_read_get_eio_as_an_os_error() {
    let store = Gated::new(Some(libc::EIO));
    let map = PageMap::new(Arc::new(FramePool::new(4).unwrap()), store.clone());
    thread::scope(|s| {
        let loader = s.spawn(|| map.load(9).map(|_| ()));
        store.wait_inside();
        let waiter = s.spawn(|| map.load(9).map(|_| ()));
        thread::sleep(std::time::Duration::from_millis(20));
        store.release();
        for r in [loader.join().unwrap(), waiter.join().unwrap()] {
            let e = std::io::Error::from(r.unwrap_err());
            assert_eq!(e.raw_os_error(), Some(libc::EIO));
        }
    });
}

#[test]
fn pages_beyond_the_stores_max_size_are_refused() {
    let store = Arc::new(Counting {
        max_size: Some(1 << 44), // 16 TiB: ext4's largest file
        ..Default::default()
    });
    let map = PageMap::new(Arc::new(FramePool::new(4).unwrap()), store.clone());
    let last = (1u64 << 32) - 1; // ends exactly at 2^44
    drop(map.load(last).unwrap());
    for index in [1u64 << 32, 1 << 40, u64::MAX] {
        let refused = |r: Result<(), Error>| {
            assert!(
                matches!(r, Err(Error::BeyondMaxSize { index: i, max_size }) if i == index && max_size == 1 << 44),
                "{index}: {r:?}"
            )
        };
        refused(map.load(index).map(|_| ()));
        refused(map.find(index).map(|_| ()));
        refused(map.readahead(index, 8).map(|_| ()));
    }
    // A window is clipped at the limit.
    assert_eq!(map.readahead(last - 2, 8).unwrap(), 2);
    assert_eq!(map.nr_pages(), 3);
    assert!(store.writes.lock().unwrap().is_empty());
    let e = std::io::Error::from(map.load(1 << 40).unwrap_err());
    assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge);
}

#[test]
fn file_store_refuses_index_2_pow_40_when_its_file_system_cannot_store_it() {
    let path = tmp("huge");
    let store = Arc::new(FileStore::open_or_create(&path).unwrap());
    let max = store.max_size();
    let map = PageMap::new(Arc::new(FramePool::new(2).unwrap()), store);
    let index = 1u64 << 40;
    let fits = (index + 1)
        .checked_mul(PAGE_SIZE as u64)
        .is_some_and(|end| end <= max);
    match map.load(index) {
        Err(Error::BeyondMaxSize { max_size, .. }) => {
            assert!(!fits);
            assert_eq!(max_size, max);
        }
        // A file system with larger files (tmpfs, xfs): only the empty
        // file's end refuses it.
        Err(Error::BeyondEof { .. }) => assert!(fits, "max_size {max}"),
        r => panic!("{r:?}"),
    }
    drop(map);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn file_store_extents_round_trip_with_a_partial_last_page() {
    let path = tmp("rt");
    let len = 70 * PAGE_SIZE + 100;
    let old: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &old).unwrap();
    let store = Arc::new(FileStore::open(&path).unwrap());
    let map = PageMap::new(Arc::new(FramePool::new(128).unwrap()), store);
    // Every page read ahead (two preadv), then dirtied.
    assert_eq!(map.readahead(0, 71).unwrap(), 71);
    let mut want = old.clone();
    for i in 0..71u64 {
        let p = map.load(i).unwrap();
        let mut b = [0u8; 8];
        p.read(0, &mut b).unwrap();
        let at = i as usize * PAGE_SIZE;
        assert_eq!(b[..], old[at..at + 8]);
        p.write(1, &[0xee; 7]).unwrap();
        want[at + 1..at + 8].fill(0xee);
    }
    let r = map.writeback(..);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.written, 71);
    // The length is kept: the partial last page writes only up to it.
    assert_eq!(std::fs::read(&path).unwrap(), want);
    drop(map);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn file_store_needs_read_and_write() {
    let path = tmp("mode");
    std::fs::write(&path, b"x").unwrap();
    let ro = std::fs::File::open(&path).unwrap();
    let e = FileStore::new(ro).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("read-only"), "{e}");
    let wo = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let e = FileStore::new(wo).unwrap_err();
    assert!(e.to_string().contains("write-only"), "{e}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn open_or_create_creates_and_never_truncates() {
    let path = tmp("create");
    let _ = std::fs::remove_file(&path);
    let s = FileStore::open_or_create(&path).unwrap();
    assert!(s.is_empty());
    drop(s);
    std::fs::write(&path, b"kept").unwrap();
    let s = FileStore::open_or_create(&path).unwrap();
    assert_eq!(s.len(), 4);
    let mut b = [0u8; PAGE_SIZE];
    s.read_page(0, &mut b).unwrap();
    assert_eq!(&b[..5], b"kept\0");
    drop(s);
    std::fs::remove_file(&path).unwrap();
}

/// `read_at` reads ahead on a sequential miss: a scan of a 64-page file in
/// 4 KiB calls costs two vectored reads (32-page windows), not 64; a read
/// out of sequence reads its own pages only.
#[test]
fn read_at_reads_ahead_when_sequential() {
    let store = Arc::new(Counting {
        mem: MemStore::with_size(64 * PAGE_SIZE as u64),
        ..Counting::default()
    });
    let map = PageMap::new(Arc::new(FramePool::new(256).unwrap()), store.clone());
    let mut buf = [0u8; PAGE_SIZE];
    let mut off = 0u64;
    while map.read_at(off, &mut buf).unwrap() > 0 {
        off += PAGE_SIZE as u64;
    }
    assert_eq!(off, 64 * PAGE_SIZE as u64);
    assert_eq!(*store.reads.lock().unwrap(), vec![(0, 32), (32, 32)]);
    assert_eq!(*store.single_reads.lock().unwrap(), 0);
    let map = PageMap::new(Arc::new(FramePool::new(256).unwrap()), store.clone());
    map.read_at(40 * PAGE_SIZE as u64, &mut buf).unwrap();
    assert_eq!(map.nr_pages(), 1, "no window for a read out of sequence");
}
