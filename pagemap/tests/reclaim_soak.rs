//! Soak test of reclaim (issue 12): a real file ten times the pool, two
//! writer threads and two reader threads going through `write_at` and
//! `read_at` while the background `Reclaimer` runs (and allocations reclaim
//! directly when it falls behind), then the file is checked byte for byte
//! against a model, through the cache and on disk.
//!
//! Each page's contents are a function of (page, version): version 0 is
//! the file's initial zeroes, version `v > 0` a header (page, v) and a
//! pattern of both. Writers own disjoint pages (page % 2) and keep a
//! per-page sequence number, odd while a write is in flight (a write is a
//! whole page, or two halves, so in between the page is torn on purpose);
//! a reader that saw the same even number before and after its read must
//! have read exactly that version: what it reads, whether the page was
//! cached, evicted after its write-back, or read back from the file.
//!
//! `SOAK_SECONDS` sets the duration (default 2 seconds, so CI runs it
//! briefly).

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pagemap::{FileStore, FramePool, PageMap, Reclaimer, Watermarks, PAGE_SIZE};

/// Frames in the pool.
const FRAMES: usize = 32;
/// Pages in the file: ten times the pool.
const PAGES: u64 = 10 * FRAMES as u64;
const WRITERS: u64 = 2;
const READERS: usize = 2;

/// Page `page`'s contents at `version` (0: the file's initial zeroes).
fn contents(page: u64, version: u64) -> Vec<u8> {
    let mut buf = vec![0u8; PAGE_SIZE];
    if version == 0 {
        return buf;
    }
    buf[..8].copy_from_slice(&page.to_le_bytes());
    buf[8..16].copy_from_slice(&version.to_le_bytes());
    let mut x =
        page.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ version.wrapping_mul(0xd1b5_4a32_d192_ed03);
    for chunk in buf[16..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    buf
}

/// A cheap per-thread random number generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The file, removed at the end (or on a panic).
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn seconds() -> f64 {
    std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0)
}

#[test]
fn reclaim_soak_two_writers_two_readers_file_ten_times_the_pool() {
    let path =
        TempFile(std::env::temp_dir().join(format!("pagemap-reclaim-soak-{}", std::process::id())));
    std::fs::File::create(&path.0)
        .and_then(|f| f.set_len(PAGES * PAGE_SIZE as u64))
        .expect("creating the soak file");
    let pool = Arc::new(FramePool::new(FRAMES).unwrap());
    let store = Arc::new(FileStore::open(&path.0).unwrap());
    let map = PageMap::new(pool.clone(), store);
    assert_eq!(map.size(), PAGES * PAGE_SIZE as u64);
    let kswapd = Reclaimer::start(pool.clone(), Watermarks { low: 4, high: 8 }).unwrap();

    // Per page: the sequence number (2 * version, odd while being written).
    let seq: Arc<Vec<AtomicU64>> = Arc::new((0..PAGES).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds());

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (map, seq, stop) = (map.clone(), seq.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x1234_5678 + w);
                let mut writes = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // This writer's pages: page % WRITERS == w.
                    let page = rng.next() % (PAGES / WRITERS) * WRITERS + w;
                    let s = &seq[page as usize];
                    let version = s.load(Ordering::Relaxed) / 2 + 1;
                    let data = contents(page, version);
                    let at = page * PAGE_SIZE as u64;
                    s.store(2 * version - 1, Ordering::SeqCst);
                    fence(Ordering::SeqCst);
                    if rng.next().is_multiple_of(2) {
                        assert_eq!(map.write_at(at, &data).unwrap(), PAGE_SIZE);
                    } else {
                        // Two halves: the second finds the page cached or,
                        // if reclaim took it meanwhile, reads it back.
                        let half = PAGE_SIZE / 2;
                        assert_eq!(map.write_at(at, &data[..half]).unwrap(), half);
                        assert_eq!(map.write_at(at + half as u64, &data[half..]).unwrap(), half);
                    }
                    s.store(2 * version, Ordering::SeqCst);
                    writes += 1;
                    if writes.is_multiple_of(64) {
                        // A write-back racing reclaim's.
                        let r = map.writeback(..);
                        assert!(r.errors.is_empty(), "{:?}", r.errors);
                    }
                }
                writes
            })
        })
        .collect();

    let readers: Vec<_> = (0..READERS)
        .map(|k| {
            let (map, seq, stop) = (map.clone(), seq.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x9876_5432 + k as u64);
                let mut buf = vec![0u8; PAGE_SIZE];
                let (mut checked, mut overlapped) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let page = rng.next() % PAGES;
                    let s = &seq[page as usize];
                    let before = s.load(Ordering::SeqCst);
                    let n = map.read_at(page * PAGE_SIZE as u64, &mut buf).unwrap();
                    assert_eq!(n, PAGE_SIZE, "short read of page {page}");
                    fence(Ordering::SeqCst);
                    let after = s.load(Ordering::SeqCst);
                    if before != after || !before.is_multiple_of(2) {
                        overlapped += 1; // a write overlapped: torn is fine
                        continue;
                    }
                    let version = before / 2;
                    if buf != contents(page, version) {
                        let got = u64::from_le_bytes(buf[8..16].try_into().unwrap());
                        let of = u64::from_le_bytes(buf[..8].try_into().unwrap());
                        panic!(
                            "reader {k}: page {page} should be version {version}, read a page \
                             whose header says page {of} version {got}"
                        );
                    }
                    checked += 1;
                }
                (checked, overlapped)
            })
        })
        .collect();

    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let writes: u64 = writers.into_iter().map(|t| t.join().unwrap()).sum();
    let (mut checked, mut overlapped) = (0, 0);
    for t in readers {
        let (c, o) = t.join().unwrap();
        checked += c;
        overlapped += o;
    }
    let background = kswapd.stop();

    // Every page through the cache (reclaim still works: direct only now).
    let mut buf = vec![0u8; PAGE_SIZE];
    for page in 0..PAGES {
        let version = seq[page as usize].load(Ordering::SeqCst) / 2;
        assert_eq!(
            map.read_at(page * PAGE_SIZE as u64, &mut buf).unwrap(),
            PAGE_SIZE
        );
        assert!(
            buf == contents(page, version),
            "page {page}: not version {version} through the cache"
        );
    }
    let stats = pool.stats();
    map.fsync().expect("the final fsync");
    drop(map);
    assert_eq!(pool.free_frames(), FRAMES, "frames leaked");

    // And on disk, byte for byte.
    let disk = std::fs::read(&path.0).unwrap();
    assert_eq!(disk.len() as u64, PAGES * PAGE_SIZE as u64);
    for page in 0..PAGES {
        let version = seq[page as usize].load(Ordering::SeqCst) / 2;
        let at = page as usize * PAGE_SIZE;
        assert!(
            disk[at..at + PAGE_SIZE] == contents(page, version)[..],
            "page {page}: not version {version} on disk"
        );
    }

    eprintln!(
        "reclaim soak: {writes} writes, {checked} reads checked ({overlapped} overlapped a \
         write); pool: {} reclaimed ({} by the background reclaimer in {} batches, {} wake-ups), \
         {} direct-reclaim stalls, {} evicted dirty, {} failed allocations",
        stats.reclaimed,
        background.reclaimed,
        background.batches,
        background.wakeups,
        stats.direct_reclaims,
        stats.maps.evicted_dirty,
        stats.failed_allocs
    );
    assert!(writes > 0 && checked > 0, "the threads did nothing");
    assert!(stats.reclaimed > 0, "nothing was reclaimed: {stats:?}");
    assert!(
        background.reclaimed > 0,
        "the background reclaimer reclaimed nothing: {background:?}"
    );
    assert!(
        stats.maps.evicted_dirty > 0,
        "no dirty page was evicted: {stats:?}"
    );
    assert_eq!(stats.failed_allocs, 0, "an allocation failed: {stats:?}");
}

/// BUG reproducer (found by the soak test above): concurrent direct
/// reclaimers make allocations fail with `PoolExhausted` although no page
/// is held for longer than a load. Four threads load (and at once let go)
/// pages of a file ten times a 32-frame pool, no background reclaimer:
/// one thread's direct reclaim takes up to `RECLAIM_BATCH` (32) victims,
/// the whole pool, and marks them; the others' scans meanwhile find every
/// page busy (marked, locked, loading), give up after four fruitless
/// rounds that only spin, and fail, though the pages they saw are about to
/// be freed.
#[test]
fn concurrent_direct_reclaim_never_fails_while_nothing_is_held() {
    let pool = Arc::new(FramePool::new(FRAMES).unwrap());
    let map = PageMap::new(pool.clone(), Arc::new(pagemap::MemStore::new()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let map = map.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x5555 + t);
                for _ in 0..20_000 {
                    let page = rng.next() % PAGES;
                    map.load(page)?;
                }
                Ok::<(), pagemap::Error>(())
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let stats = pool.stats();
    assert!(
        results.iter().all(|r| r.is_ok()),
        "loads failed with nothing held: {results:?}; failed allocations: {}",
        stats.failed_allocs
    );
}
