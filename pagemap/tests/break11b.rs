//! break11b: a second, fresh break-it pass over issue 11, aimed at what
//! changed after the first one (the store's length record, size changes
//! asking the store first, whole-page write misses without reads).
//! Failing findings are `#[ignore]`d with "BUG:".

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pagemap::{
    BackingStore, Error, FileStore, FramePool, MemStore, PageBuf, PageMap, PageSrc, StoreControl,
    StoreError, PAGE_SIZE,
};

const PS: u64 = PAGE_SIZE as u64;

fn tmp(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "pagemap-break11b-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn pool(frames: usize) -> Arc<FramePool> {
    Arc::new(FramePool::new(frames).unwrap())
}

/// A `MemStore` whose `set_size` can be refused (as the trait's default
/// does) or made to fail after a number of successful calls, with a
/// chosen `max_size`.
struct Ctl {
    inner: MemStore,
    /// Successful `set_size` calls left before they fail (-1: never fail).
    set_size_ok_left: AtomicI64,
    /// Refuse every `set_size`, as a store without the method does.
    no_set_size: AtomicBool,
    max: u64,
}

impl Ctl {
    fn new(inner: MemStore, max: u64) -> Self {
        Self {
            inner,
            set_size_ok_left: AtomicI64::new(-1),
            no_set_size: AtomicBool::new(false),
            max,
        }
    }
}

impl BackingStore for Ctl {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        self.inner.read_page(index, buf)
    }
    fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError> {
        self.inner.write_page(index, src)
    }
}

impl StoreControl for Ctl {
    fn max_size(&self) -> u64 {
        self.max
    }
    fn size(&self) -> Result<Option<u64>, StoreError> {
        self.inner.size()
    }
    fn set_size(&self, bytes: u64) -> Result<(), StoreError> {
        if self.no_set_size.load(Ordering::Relaxed) {
            return Err(StoreError::new(StoreError::EOPNOTSUPP));
        }
        let left = self.set_size_ok_left.load(Ordering::Relaxed);
        if left == 0 {
            return Err(StoreError::new(StoreError::EIO));
        }
        if left > 0 {
            self.set_size_ok_left.store(left - 1, Ordering::Relaxed);
        }
        self.inner.set_size(bytes)
    }
    fn punch_hole(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        self.inner.punch_hole(offset, len)
    }
}

// ---------------------------------------------------------------------------
// b. Size changes ask the store first.

/// A shrink whose first cut succeeds and whose second fails leaves the
/// store's length record (`store_size`) at the OLD length: it was only
/// reset by `store_resized`, which the failure skips. A later extending
/// write whose last page is dropped unwritten then never makes the store
/// as long as the size: `persist_size` thinks it is long enough already.
#[test]
fn failed_second_cut_then_dropped_append_leaves_store_short() {
    let store = Arc::new(Ctl::new(MemStore::with_size(0), u64::MAX));
    let map = PageMap::new(pool(16), store.clone());
    map.write_at(0, &[1u8; 3 * PAGE_SIZE]).unwrap();
    map.fsync().unwrap();
    assert_eq!(store.size().unwrap(), Some(3 * PS));

    // The first cut succeeds, the second fails.
    store.set_size_ok_left.store(1, Ordering::Relaxed);
    assert!(matches!(map.set_size(PS), Err(Error::SetSize { .. })));
    store.set_size_ok_left.store(-1, Ordering::Relaxed);
    assert_eq!(map.size(), PS, "the cache's half ran (documented)");
    assert_eq!(store.size().unwrap(), Some(PS), "the first cut held");

    // An append, whose last page leaves the cache unwritten.
    map.write_at(10_000, b"x").unwrap();
    assert_eq!(map.size(), 10_001);
    let r = map.remove_or_zero(2..3);
    assert_eq!(r.discarded, 1);
    map.fsync().unwrap();
    assert_eq!(
        store.size().unwrap(),
        Some(map.size()),
        "fsync succeeded but the store is shorter than size()"
    );
}

/// A size change a store refuses changes nothing: size, end, cached pages,
/// their bytes and dirty bits.
#[test]
fn refused_size_changes_change_nothing() {
    let store = Arc::new(Ctl::new(MemStore::with_size(0), u64::MAX));
    let map = PageMap::new(pool(16), store.clone());
    map.write_at(0, &[5u8; 10_000]).unwrap();
    store.no_set_size.store(true, Ordering::Relaxed);
    let check = |what: &str| {
        assert_eq!((map.size(), map.end()), (10_000, 3), "{what}");
        assert_eq!(map.nr_pages(), 3, "{what}");
        assert_eq!(map.dirty_indices(..), vec![0, 1, 2], "{what}");
        let mut b = vec![0u8; 10_000];
        assert_eq!(map.read_at(0, &mut b).unwrap(), 10_000, "{what}");
        assert!(b.iter().all(|&x| x == 5), "{what}");
    };
    assert!(matches!(map.set_size(5000), Err(Error::SetSize { .. })));
    check("set_size shrink");
    assert!(matches!(map.set_size(20_000), Err(Error::SetSize { .. })));
    check("set_size extend");
    assert!(matches!(map.set_size(8192), Err(Error::SetSize { .. })));
    check("set_size shrink to a page boundary");
    let r = map.truncate(1);
    assert!(matches!(r.errors[..], [Error::Truncate { .. }]));
    assert_eq!((r.removed, r.discarded), (0, 0));
    check("truncate shrink");
    let r = map.truncate(10);
    assert_eq!(r.errors.len(), 1);
    check("truncate extend");
    // The write-back still writes the valid bytes.
    assert!(map.writeback(..).errors.is_empty());
    assert_eq!(store.inner.page(2).unwrap()[10_000 - 8192 - 1], 5);
}

/// A file-like store (it reports a size) without `set_size`: an append
/// whose last page is dropped unwritten (remove_or_zero) leaves the store
/// short, and `persist_size` can only call `set_size`, which the store
/// refuses, so every later fsync failed for good (was a BUG), though the
/// store could be extended by writing that page's valid bytes (zeroes):
/// now fsync does that.
#[test]
fn no_set_size_store_fsync_recovers_after_dropped_append() {
    let store = Arc::new(Ctl::new(MemStore::with_size(0), u64::MAX));
    store.no_set_size.store(true, Ordering::Relaxed);
    let map = PageMap::new(pool(16), store.clone());
    map.write_at(0, &[9u8; 5000]).unwrap();
    map.writeback(0..1);
    let r = map.remove_or_zero(1..2);
    assert_eq!(r.discarded, 1);
    let mut last = None;
    for _ in 0..3 {
        last = Some(map.fsync());
    }
    assert!(
        last.unwrap().is_ok(),
        "fsync keeps failing: store {:?}, size {}",
        store.size(),
        map.size()
    );
    // Was a BUG (fixed: fsync writes the last page instead of resizing a
    // store that cannot): the store is as long as the size, the dropped
    // append's bytes read as zeroes, the written page is kept.
    assert_eq!(store.size().unwrap(), Some(5000));
    let mut b = vec![1u8; 5000];
    assert_eq!(map.read_at(0, &mut b).unwrap(), 5000);
    assert!(b[..4096].iter().all(|&x| x == 9));
    assert!(b[4096..].iter().all(|&x| x == 0));
}

// ---------------------------------------------------------------------------
// c. Whole-page write misses (`overwrite_miss`).

/// At the store's max_size: the last addressable page can be overwritten
/// whole, the next one is refused and changes nothing.
#[test]
fn whole_page_write_at_max_size() {
    let store = Arc::new(Ctl::new(MemStore::with_size(0), 3 * PS));
    let map = PageMap::new(pool(8), store.clone());
    assert_eq!(map.write_at(2 * PS, &[1u8; PAGE_SIZE]).unwrap(), PAGE_SIZE);
    assert_eq!(map.size(), 3 * PS);
    assert!(map.write_at(3 * PS, &[2u8; PAGE_SIZE]).is_err());
    assert_eq!((map.size(), map.end()), (3 * PS, 3));
    assert_eq!(map.nr_pages(), 1);
    // A write straddling the limit: short at the limit, or refused whole.
    if let Ok(n) = map.write_at(2 * PS + 100, &[3u8; PAGE_SIZE]) {
        assert_eq!(n, PAGE_SIZE - 100);
    }
    assert_eq!(map.size(), 3 * PS);
    map.fsync().unwrap();
    assert_eq!(store.size().unwrap(), Some(3 * PS));
}

/// A whole-page overwrite of a page evicted from the cache reads nothing
/// from the store; a partial one still reads the page (and keeps the rest).
#[test]
fn whole_page_overwrite_no_read_partial_reads() {
    let store = Arc::new(Ctl::new(MemStore::with_size(0), u64::MAX));
    let map = PageMap::new(pool(8), store.clone());
    map.write_at(0, &[1u8; 4 * PAGE_SIZE]).unwrap();
    map.fsync().unwrap();
    map.free_unused();
    assert_eq!(map.nr_pages(), 0);
    let (r0, _) = store.inner.io_counts();
    map.write_at(PS, &[2u8; PAGE_SIZE]).unwrap();
    assert_eq!(store.inner.io_counts().0, r0, "a whole-page overwrite read");
    map.write_at(2 * PS + 10, &[3u8; 10]).unwrap();
    assert!(store.inner.io_counts().0 > r0, "a partial write must read");
    let mut b = vec![0u8; 4 * PAGE_SIZE];
    map.read_at(0, &mut b).unwrap();
    assert!(b[..PAGE_SIZE].iter().all(|&x| x == 1));
    assert!(b[PAGE_SIZE..2 * PAGE_SIZE].iter().all(|&x| x == 2));
    assert_eq!(
        &b[2 * PAGE_SIZE..2 * PAGE_SIZE + 12],
        &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3]
    );
    assert!(b[2 * PAGE_SIZE + 20..].iter().all(|&x| x == 1));
}

/// Whole-page writes (overwrites and appends) race page-aligned shrinks
/// and extensions, whole-page punches, free_unused, remove_or_zero,
/// readers and write-backs on a real file. Every page is written whole
/// with one byte value, so every page read, and every page on disk after
/// the final fsync, must hold one value throughout (zeroes included): a
/// torn page, old store bytes under a newer write, or a file whose length
/// differs from size() is a bug.
#[test]
fn whole_page_writes_race_resizes_punches_and_readers() {
    let path = tmp("race");
    let store = Arc::new(FileStore::open_or_create(&path).unwrap());
    let map = PageMap::new(pool(24), store.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(AtomicU64::new(1));
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut hs = Vec::new();
    for t in 0..2u64 {
        let (map, stop, seq) = (map.clone(), stop.clone(), seq.clone());
        hs.push(std::thread::spawn(move || {
            let mut x = 12345 + t;
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let index = x % 40;
                let v = (seq.fetch_add(1, Ordering::Relaxed) % 255 + 1) as u8;
                match map.write_at(index * PS, &[v; PAGE_SIZE]) {
                    Ok(n) => assert_eq!(n, PAGE_SIZE),
                    Err(Error::PoolExhausted { .. }) => {
                        map.free_unused();
                    }
                    Err(Error::BeyondEof { .. } | Error::BeyondSize { .. }) => {}
                    Err(e) => panic!("write_at: {e}"),
                }
            }
        }));
    }
    {
        let (map, stop) = (map.clone(), stop.clone());
        hs.push(std::thread::spawn(move || {
            let mut b = vec![0u8; PAGE_SIZE];
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i = (i * 7 + 3) % 40;
                match map.read_at(i * PS, &mut b) {
                    Ok(0) => {}
                    // (a read racing a write of the page may see it torn:
                    // documented, lock-free reads; the disk is checked below)
                    Ok(n) => assert_eq!(n, PAGE_SIZE, "sizes are page aligned"),
                    Err(Error::PoolExhausted { .. }) => {
                        map.free_unused();
                    }
                    Err(e) => panic!("read_at: {e}"),
                }
            }
        }));
    }
    {
        let (map, stop) = (map.clone(), stop.clone());
        hs.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                map.writeback(..);
                let _ = map.fsync();
            }
        }));
    }
    let mut x = 99u64;
    while Instant::now() < deadline {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let p = (x >> 8) % 40;
        match x % 6 {
            0 => {
                map.set_size(p * PS).unwrap();
            }
            1 => {
                map.truncate(p);
            }
            2 => {
                map.punch_hole(p * PS, ((x >> 20) % 4 + 1) * PS).unwrap();
            }
            3 => {
                map.free_unused();
            }
            4 => {
                map.remove_or_zero(p..p + 2);
            }
            _ => {
                let mut b = vec![0u8; PAGE_SIZE];
                let _ = map.load(p).map(|pg| pg.read(0, &mut b));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    map.fsync().unwrap();
    let size = map.size();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    map.close().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, size);
    for (i, page) in bytes.chunks(PAGE_SIZE).enumerate() {
        assert!(page.iter().all(|&x| x == page[0]), "torn page {i} on disk");
    }
    let _ = std::fs::remove_file(&path);
}

/// Every path that drops dirty pages past the store's length, with a
/// concurrent write-back loop, against a model: after each fsync the file
/// is exactly size() long and holds the model's bytes.
#[test]
fn dropping_paths_with_concurrent_writeback_match_a_model() {
    let path = tmp("model");
    let store = Arc::new(FileStore::open_or_create(&path).unwrap());
    let map = PageMap::new(pool(32), store.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let wb = {
        let (map, stop) = (map.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                map.writeback(..);
            }
        })
    };
    let mut model: Vec<u8> = Vec::new();
    let mut x = 7u64;
    for step in 0..3000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = (x >> 12) % (12 * PS);
        let len = (x >> 30) % (2 * PS) + 1;
        match x % 7 {
            0 | 1 => {
                // an append or a write anywhere
                let at = if (x >> 40).is_multiple_of(2) {
                    model.len() as u64
                } else {
                    off
                };
                let v = (step % 250 + 1) as u8;
                let data = vec![v; len as usize];
                let n = map.write_at(at, &data).unwrap();
                assert_eq!(n, data.len());
                let end = (at + len) as usize;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[at as usize..end].fill(v);
            }
            2 => {
                map.set_size(off).unwrap();
                model.resize(off as usize, 0);
            }
            3 => {
                let r = map.punch_hole(off, len).unwrap();
                assert!(r.errors.is_empty());
                let end = ((off + len) as usize).min(model.len());
                if (off as usize) < end {
                    model[off as usize..end].fill(0);
                }
            }
            4 => {
                let p = off / PS;
                map.truncate(p);
                model.resize((p * PS) as usize, 0);
            }
            5 => {
                // remove_or_zero drops whole cached pages: the model loses
                // the dirty bytes there, which are unknowable here, so
                // write back first and compare what must survive.
                map.fsync().unwrap();
                let p = off / PS;
                let r = map.remove_or_zero(p..p + 2);
                assert!(r.errors.is_empty());
            }
            _ => {
                map.fsync().unwrap();
                assert_eq!(map.size(), model.len() as u64, "step {step}");
                assert_eq!(
                    std::fs::metadata(&path).unwrap().len(),
                    model.len() as u64,
                    "on-disk length after fsync, step {step}"
                );
                let disk = std::fs::read(&path).unwrap();
                assert!(
                    disk == model,
                    "on-disk bytes differ from the model at step {step}"
                );
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    wb.join().unwrap();
    map.fsync().unwrap();
    map.close().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), model);
    let _ = std::fs::remove_file(&path);
}

/// An append whose last page is dropped by `destroy(true)`, then a drop of
/// the map: the store is as long as the size, the dropped bytes zeroes.
#[test]
fn destroy_discard_then_drop_store_length() {
    let path = tmp("destroy");
    let store = Arc::new(FileStore::open_or_create(&path).unwrap());
    let map = PageMap::new(pool(8), store.clone());
    map.write_at(0, &[4u8; 6000]).unwrap();
    map.writeback(0..1);
    map.write_at(6000, &[5u8; 5000]).unwrap();
    let r = map.destroy(true);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 11_000);
    drop(map);
    let b = std::fs::read(&path).unwrap();
    assert_eq!(b.len(), 11_000);
    assert!(b[..4096].iter().all(|&x| x == 4));
    assert!(
        b[4096..].iter().all(|&x| x == 0),
        "dropped bytes read as zeroes"
    );
    let _ = std::fs::remove_file(&path);
}

// ---------------------------------------------------------------------------
// d. Readahead.

/// A store that counts read calls (a vectored read is one).
struct Counting {
    inner: MemStore,
    calls: AtomicU64,
}

impl BackingStore for Counting {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.read_page(index, buf)
    }
    fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError> {
        self.inner.write_page(index, src)
    }
    fn read_pages(&self, first: u64, bufs: &mut [&mut PageBuf]) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        for (i, b) in bufs.iter_mut().enumerate() {
            self.inner.read_page(first + i as u64, b)?;
        }
        Ok(())
    }
}

impl StoreControl for Counting {
    fn size(&self) -> Result<Option<u64>, StoreError> {
        self.inner.size()
    }
    fn set_size(&self, bytes: u64) -> Result<(), StoreError> {
        self.inner.set_size(bytes)
    }
}

fn counting_map(pages: u64) -> (Arc<Counting>, Arc<PageMap>) {
    let inner = MemStore::with_size(pages * PS);
    for i in 0..pages {
        inner.set_page(i, &[(i % 251) as u8; PAGE_SIZE]);
    }
    let store = Arc::new(Counting {
        inner,
        calls: AtomicU64::new(0),
    });
    let map = PageMap::new(pool(1024), store.clone());
    (store, map)
}

/// A sequential 4 KiB reader reads ahead: far fewer store calls than
/// pages, after random reads too.
#[test]
fn sequential_reader_reads_ahead_after_random_reads() {
    let (store, map) = counting_map(512);
    let mut b = vec![0u8; PAGE_SIZE];
    for i in [300u64, 17, 450, 5] {
        map.read_at(i * PS, &mut b).unwrap();
    }
    let c0 = store.calls.load(Ordering::Relaxed);
    for i in 0..256u64 {
        map.read_at(i * PS, &mut b).unwrap();
        assert_eq!(b[0], (i % 251) as u8);
    }
    let calls = store.calls.load(Ordering::Relaxed) - c0;
    assert!(
        calls <= 256 / 8,
        "{calls} store reads for 256 sequential pages"
    );
}

/// Two interleaved sequential streams, and a sequential stream with a
/// random reader beside it: how many store reads each costs (a stream's
/// hits no longer move the readahead hint, so a random miss between them
/// costs the stream its next window).
#[test]
fn interleaved_streams_read_ahead() {
    let (store, map) = counting_map(1024);
    let mut b = vec![0u8; PAGE_SIZE];
    for i in 0..256u64 {
        map.read_at(i * PS, &mut b).unwrap();
        map.read_at((512 + i) * PS, &mut b).unwrap();
    }
    let two = store.calls.load(Ordering::Relaxed);
    let (store, map) = counting_map(1024);
    let mut x = 5u64;
    for i in 0..256u64 {
        map.read_at(i * PS, &mut b).unwrap();
        if i % 4 == 0 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            map.read_at((512 + (x >> 33) % 512) * PS, &mut b).unwrap();
        }
    }
    let random = store.calls.load(Ordering::Relaxed);
    eprintln!("two streams: {two} store reads; a stream + random reads: {random}");
    // Two streams: each miss is one stream's, the other's hint lost, so at
    // worst one call per page; a single stream would need about 8.
    assert!(two <= 512, "{two}");
}

/// A store whose `set_size` calls go through `hook` first: call 0 is a
/// shrink's first cut, after which the hook puts old bytes back past the
/// cut (a write-back of a cut page landing between the two cuts); call 1,
/// the second cut, fails.
struct StaleBetweenCuts {
    inner: MemStore,
    calls: AtomicU32,
}

impl BackingStore for StaleBetweenCuts {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        self.inner.read_page(index, buf)
    }
    fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError> {
        self.inner.write_page(index, src)
    }
}

impl StoreControl for StaleBetweenCuts {
    fn size(&self) -> Result<Option<u64>, StoreError> {
        self.inner.size()
    }
    fn set_size(&self, bytes: u64) -> Result<(), StoreError> {
        match self.calls.fetch_add(1, Ordering::Relaxed) {
            0 => {
                self.inner.set_size(bytes)?;
                // The late write-back of the old page 1, whole.
                self.inner.set_size(2 * PAGE_SIZE as u64)?;
                self.inner.set_page(1, &[7u8; PAGE_SIZE]);
                Ok(())
            }
            1 => Err(StoreError::new(StoreError::EIO)),
            _ => self.inner.set_size(bytes),
        }
    }
}

/// After a shrink whose second cut failed (the store may keep old bytes
/// past the size), an extension cuts the store to the size first: the cut
/// bytes never come back as file data.
#[test]
fn an_extension_after_a_failed_second_cut_does_not_bring_old_bytes_back() {
    let store = Arc::new(StaleBetweenCuts {
        inner: MemStore::with_size(2 * PAGE_SIZE as u64),
        calls: AtomicU32::new(0),
    });
    let map = PageMap::new(pool(8), store.clone());
    let e = map.set_size(100).unwrap_err();
    assert!(matches!(e, Error::SetSize { size: 100, .. }), "{e:?}");
    assert_eq!(map.size(), 100, "the cache's half is done");
    map.set_size(2 * PAGE_SIZE as u64).unwrap();
    let mut b = vec![1u8; PAGE_SIZE];
    assert_eq!(map.read_at(PAGE_SIZE as u64, &mut b).unwrap(), PAGE_SIZE);
    assert!(b.iter().all(|&x| x == 0), "cut bytes came back: {}", b[0]);
}
