//! Durability (issue 11, items 4, 5 and 7): `StoreControl::sync`,
//! `PageMap::fsync` and the write errors it must not swallow, `close`, the
//! drop's log of lost pages, and the flusher's sync and per-page backoff.
// Uses the Flusher and FileStore (real threads and files), which the loom
// build leaves out.
#![cfg(not(pagemap_loom))]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use pagemap::{
    BackingStore, Error, FileStore, Flusher, FramePool, MemStore, OwnedPageRef, PageBuf, PageMap,
    PageSrc, ReadIo, StoreControl, StoreError, SubmitStore, WriteIo, MAX_REPORTED_ERRORS,
    PAGE_SIZE,
};

/// Wraps a store: counts syncs, can fail them, and fails the first
/// `fail_next` writes (of any page), recording when each write was tried.
struct Probe<S> {
    inner: S,
    syncs: AtomicU64,
    fail_syncs: AtomicU32,
    fail_next: AtomicU32,
    attempts: Mutex<Vec<Instant>>,
}

impl<S> Probe<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            syncs: AtomicU64::new(0),
            fail_syncs: AtomicU32::new(0),
            fail_next: AtomicU32::new(0),
            attempts: Mutex::new(Vec::new()),
        }
    }

    fn syncs(&self) -> u64 {
        // Relaxed: a counter read after the calls returned (same thread,
        // or after a join or a report lock).
        self.syncs.load(Ordering::Relaxed)
    }

    fn attempts(&self) -> Vec<Instant> {
        self.attempts.lock().unwrap().clone()
    }
}

/// Takes one from `n` if it is not zero.
fn take_one(n: &AtomicU32) -> bool {
    // Relaxed: a test counter, no data behind it.
    n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
        .is_ok()
}

impl<S: BackingStore> BackingStore for Probe<S> {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        self.inner.read_page(index, buf)
    }

    fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError> {
        self.attempts.lock().unwrap().push(Instant::now());
        if take_one(&self.fail_next) {
            return Err(StoreError::new(StoreError::EIO));
        }
        self.inner.write_page(index, src)
    }
}

impl<S: BackingStore> StoreControl for Probe<S> {
    fn sync(&self) -> Result<(), StoreError> {
        // Relaxed: a counter (see `syncs`).
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if take_one(&self.fail_syncs) {
            return Err(StoreError::new(StoreError::EIO));
        }
        self.inner.sync()
    }
}

fn probe_map(frames: usize) -> (Arc<PageMap>, Arc<Probe<MemStore>>) {
    let store = Arc::new(Probe::new(MemStore::new()));
    let map = PageMap::new(Arc::new(FramePool::new(frames).unwrap()), store.clone());
    (map, store)
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pagemap-durable-{name}-{}", std::process::id()))
}

#[test]
fn fsync_on_a_file_store_writes_back_then_fdatasyncs() {
    let path = tmp("fsync");
    std::fs::write(&path, vec![0u8; 2 * PAGE_SIZE]).unwrap();
    let store = Arc::new(Probe::new(FileStore::open(&path).unwrap()));
    let map = PageMap::new(Arc::new(FramePool::new(4).unwrap()), store.clone());
    map.load(1).unwrap().write(10, b"durable").unwrap();
    let r = map.fsync().unwrap();
    assert_eq!(r.written, 1);
    assert_eq!(store.syncs(), 1, "one fdatasync, after the write-back");
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(&on_disk[PAGE_SIZE + 10..PAGE_SIZE + 17], b"durable");
    // Nothing dirty: still a sync (data written by earlier write-backs).
    map.writeback(..);
    map.fsync().unwrap();
    assert_eq!(store.syncs(), 2);
    // The plain write-back never syncs.
    map.load(0).unwrap().write(0, b"x").unwrap();
    assert_eq!(map.writeback(..).written, 1);
    assert_eq!(store.syncs(), 2, "writeback is not fsync");
    drop(map);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn the_file_store_syncs_through_the_trait() {
    let path = tmp("trait");
    std::fs::write(&path, b"abc").unwrap();
    let store: Arc<dyn BackingStore> = Arc::new(FileStore::open(&path).unwrap());
    store.sync().unwrap();
    MemStore::new().sync().unwrap();
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn fsync_reports_failed_pages_and_still_syncs_the_store() {
    let (map, store) = probe_map(4);
    map.load(1).unwrap().write(0, b"a").unwrap();
    map.load(2).unwrap().write(0, b"b").unwrap();
    // Pages 1 and 2 go as one extent, which fails at page 1 and is then
    // retried page by page: page 1 fails twice.
    store.fail_next.store(2, Ordering::Relaxed);
    let e = map.fsync().unwrap_err();
    assert_eq!(e.report.written, 1);
    assert!(
        matches!(e.report.errors[..], [Error::Write { index: 1, .. }]),
        "{e:?}"
    );
    assert_eq!(
        e.earlier, None,
        "its own error is reported once, in the report"
    );
    assert_eq!(e.sync, None);
    assert_eq!(store.syncs(), 1, "what was written is synced all the same");
    assert!(matches!(e.error(), Error::Write { index: 1, .. }));
    assert!(e.to_string().contains("page 1"), "{e}");
    // Kept dirty; the next fsync writes it, and does not report the
    // error again.
    assert_eq!(map.dirty_indices(..), vec![1]);
    assert_eq!(map.fsync().unwrap().written, 1);
    assert!(map.dirty_indices(..).is_empty());
}

#[test]
fn a_failed_store_sync_fails_the_fsync() {
    let (map, store) = probe_map(2);
    map.load(0).unwrap().write(0, b"a").unwrap();
    store.fail_syncs.store(1, Ordering::Relaxed);
    let e = map.fsync().unwrap_err();
    assert_eq!(e.report.written, 1);
    assert_eq!(e.sync, Some(StoreError::new(StoreError::EIO)));
    let err: Error = e.into();
    assert_eq!(
        err,
        Error::Sync {
            source: StoreError::new(StoreError::EIO)
        }
    );
    assert!(core::error::Error::source(&err).is_some());
    map.fsync().unwrap();
}

/// Linux's errseq_t: an error another write-back met between two fsyncs is
/// reported by the next fsync, once, even if the page was written since.
#[test]
fn an_error_between_two_fsyncs_is_reported_by_the_next_one_once() {
    let (map, store) = probe_map(4);
    map.fsync().unwrap();
    map.load(3).unwrap().write(0, b"z").unwrap();
    store.fail_next.store(1, Ordering::Relaxed);
    // A background write-back (as a flusher's round or an msync) fails...
    let r = map.writeback(..);
    assert_eq!(r.errors.len(), 1);
    // ... and another one succeeds: the data is in the store now.
    assert_eq!(map.writeback(..).written, 1);
    let e = map.fsync().unwrap_err();
    assert_eq!(e.report.written, 0);
    assert!(
        matches!(e.earlier, Some(Error::Write { index: 3, .. })),
        "{e:?}"
    );
    assert_eq!(store.syncs(), 2, "synced anyway");
    map.fsync().unwrap();
}

#[test]
fn a_flusher_error_is_not_swallowed_before_the_next_fsync() {
    let (map, store) = probe_map(4);
    map.load(5).unwrap().write(0, b"q").unwrap();
    store.fail_next.store(1, Ordering::Relaxed);
    let flusher = Flusher::spawn(vec![map.clone()], Duration::from_millis(1));
    while flusher.report().errors == 0 {
        thread::sleep(Duration::from_millis(1));
    }
    let r = flusher.stop(); // its last round writes the page
    assert!(
        matches!(r.last_error, Some(Error::Write { index: 5, .. })),
        "{r:?}"
    );
    assert!(map.dirty_indices(..).is_empty());
    let e = map.fsync().unwrap_err();
    assert!(matches!(e.earlier, Some(Error::Write { index: 5, .. })));
    map.fsync().unwrap();
}

#[test]
fn close_fsyncs_and_frees_every_frame() {
    let (map, store) = probe_map(8);
    let pool = map.pool().clone();
    for i in 0..5 {
        map.load(i).unwrap().write(0, &[i as u8 + 1]).unwrap();
    }
    map.close().unwrap();
    assert_eq!(store.syncs(), 1);
    assert_eq!(pool.free_frames(), pool.capacity());
    assert_eq!(store.inner.page(4).unwrap()[0], 5);
}

/// Every lost page is listed, past the bound on a report's errors.
#[test]
fn close_lists_every_page_it_could_not_write() {
    let n = MAX_REPORTED_ERRORS as u64 + 10;
    let store = Arc::new(MemStore::new());
    let pool = Arc::new(FramePool::new(n as usize + 1).unwrap());
    let map = PageMap::new(pool.clone(), store.clone());
    for i in 0..=n {
        map.load(i).unwrap().write(0, b"w").unwrap();
        if i < n {
            store.fail_writes(i, true);
        }
    }
    let e = map.close().unwrap_err();
    let lost: Vec<u64> = e.lost.iter().map(|(i, _)| *i).collect();
    assert_eq!(lost, (0..n).collect::<Vec<_>>());
    assert!(e
        .lost
        .iter()
        .all(|(i, e)| matches!(e, Error::Write { index, .. } if index == i)));
    assert_eq!(e.sync, None);
    assert!(e.to_string().contains(&format!("{n} pages lost")), "{e}");
    assert_eq!(pool.free_frames(), pool.capacity(), "freed all the same");
    assert_eq!(store.page(n).unwrap()[0], b'w', "the good page was written");
}

#[test]
fn an_arc_map_is_closed_by_its_last_holder() {
    let (map, store) = probe_map(4);
    let flusher = Flusher::builder()
        .period(Duration::from_millis(2))
        .spawn(vec![map.clone()]);
    let owned = map.load(2).unwrap().into_owned(&map);
    owned.get().write(0, b"o").unwrap();
    let other = map.clone();
    // Held elsewhere (the flusher, the owned reference, a clone): no close.
    drop((owned, other));
    flusher.stop();
    map.close().unwrap();
    assert_eq!(store.inner.page(2).unwrap()[0], b'o');
}

/// Item 7: an owned page reference borrows nothing, crosses threads, and
/// keeps its map alive; dropping it is the put.
#[test]
fn owned_page_refs_are_static_and_put_on_drop() {
    fn is_static_send_sync<T: 'static + Send + Sync>() {}
    is_static_send_sync::<OwnedPageRef>();
    let (map, _) = probe_map(2);
    let owned = map.load(0).unwrap().into_owned(&map);
    let weak = Arc::downgrade(&map);
    drop(map);
    let holders = thread::spawn(move || owned.get().holders()).join().unwrap();
    assert_eq!(holders, 1);
    assert!(weak.upgrade().is_none(), "the put, then the map, released");
}

/// What the drop logs: `log` records, kept by a logger installed once.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Error
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            self.0.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn captured() -> &'static Capture {
    static LOGGER: OnceLock<&'static Capture> = OnceLock::new();
    LOGGER.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(c).unwrap();
        log::set_max_level(log::LevelFilter::Error);
        c
    })
}

#[test]
fn the_drop_writes_back_and_logs_each_lost_page() {
    let logs = captured();
    let store = Arc::new(MemStore::new());
    let map = PageMap::new(Arc::new(FramePool::new(4).unwrap()), store.clone());
    map.load(7).unwrap().write(0, b"kept").unwrap();
    map.load(9).unwrap().write(0, b"lost").unwrap();
    store.fail_writes(9, true);
    let id = format!("{map:?}");
    let id = id.split("id: ").nth(1).unwrap().split(',').next().unwrap();
    drop(map);
    assert_eq!(&store.page(7).unwrap()[..4], b"kept");
    let logs = logs.0.lock().unwrap();
    let ours: Vec<_> = logs
        .iter()
        .filter(|l| l.contains(&format!("page map #{id}:")))
        .collect();
    assert_eq!(ours.len(), 1, "{logs:?}");
    assert!(
        ours[0].contains("page 9") && ours[0].contains("lost"),
        "{ours:?}"
    );
}

#[test]
fn a_flusher_set_to_fsync_syncs_after_each_round() {
    let (map, store) = probe_map(4);
    let flusher = Flusher::builder()
        .period(Duration::from_millis(1))
        .fsync(true)
        .spawn(vec![map.clone()]);
    map.load(0).unwrap().write(0, b"s").unwrap();
    while flusher.report().rounds < 3 {
        thread::sleep(Duration::from_millis(1));
    }
    let r = flusher.stop();
    assert_eq!(r.syncs, r.rounds, "one map: one sync a round");
    assert_eq!(store.syncs(), r.syncs);
    assert_eq!(r.errors, 0);
    // Its syncs leave nothing for the user's fsync to report.
    map.fsync().unwrap();
}

#[test]
fn a_flusher_reports_a_failed_store_sync() {
    let (map, store) = probe_map(4);
    store.fail_syncs.store(1, Ordering::Relaxed);
    let r = Flusher::builder()
        .period(Duration::from_millis(1))
        .fsync(true)
        .spawn(vec![map.clone()])
        .stop();
    assert_eq!(r.errors, 1, "{r:?}");
    assert_eq!(
        r.last_error,
        Some(Error::Sync {
            source: StoreError::new(StoreError::EIO)
        })
    );
}

/// A page whose writes fail N times, then succeed: its attempts are spaced
/// at least period, 2 periods, 4 periods..., and once written it is no
/// longer stuck.
#[test]
fn failing_pages_back_off_exponentially_and_recover() {
    const N: u32 = 5;
    let period = Duration::from_millis(4);
    let (map, store) = probe_map(4);
    map.load(1).unwrap().write(0, b"b").unwrap();
    store.fail_next.store(N, Ordering::Relaxed);
    let flusher = Flusher::builder()
        .period(period)
        .max_backoff(Duration::from_secs(10))
        .spawn(vec![map.clone()]);
    let mut saw_stuck = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.attempts().len() <= N as usize {
        assert!(Instant::now() < deadline, "never recovered");
        saw_stuck |= flusher.report().stuck_pages == 1;
        thread::sleep(Duration::from_millis(1));
    }
    // The report is updated at the end of the round that wrote the page.
    while flusher.report().stuck_pages != 0 {
        assert!(Instant::now() < deadline, "still stuck");
        thread::sleep(Duration::from_millis(1));
    }
    let r = flusher.stop();
    assert!(saw_stuck);
    let at = store.attempts();
    assert_eq!(
        at.len(),
        N as usize + 1,
        "one attempt per backoff, then the good one"
    );
    for (k, w) in at.windows(2).enumerate() {
        let least = period * (1 << k);
        assert!(
            w[1] - w[0] >= least,
            "attempt {} came {:?} after the one before, less than {least:?}",
            k + 1,
            w[1] - w[0]
        );
    }
    assert_eq!(r.errors, u64::from(N));
    assert_eq!(
        r.retries,
        u64::from(N),
        "N - 1 failed retries, then the good one"
    );
    assert_eq!(r.stuck_pages, 0);
    assert_eq!(&store.inner.page(1).unwrap()[..1], b"b");
}

/// The backoff stops doubling at the cap: ten failures with a cap of two
/// periods take about twenty periods, not a thousand.
#[test]
fn the_backoff_is_capped() {
    const N: u32 = 10;
    let period = Duration::from_millis(1);
    let (map, store) = probe_map(4);
    map.load(0).unwrap().write(0, b"c").unwrap();
    store.fail_next.store(N, Ordering::Relaxed);
    let started = Instant::now();
    let flusher = Flusher::builder()
        .period(period)
        .max_backoff(period * 2)
        .spawn(vec![map.clone()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.attempts().len() <= N as usize {
        assert!(Instant::now() < deadline, "never recovered");
        thread::sleep(Duration::from_millis(1));
    }
    let took = started.elapsed();
    flusher.stop();
    // Uncapped, the delays alone would add up to 1023 periods.
    assert!(took < period * 800, "took {took:?}");
}

/// A page in backoff that someone else writes (an msync, an fsync) is no
/// longer counted as stuck, and not tried again.
#[test]
fn a_page_written_by_someone_else_leaves_the_backoff() {
    let (map, store) = probe_map(4);
    map.load(4).unwrap().write(0, b"e").unwrap();
    store.fail_next.store(1, Ordering::Relaxed);
    // The first round runs at once and fails; the next try is a minute off.
    let flusher = Flusher::builder()
        .period(Duration::from_secs(60))
        .spawn(vec![map.clone()]);
    while flusher.report().stuck_pages == 0 {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(map.writeback(..).written, 1);
    flusher.kick();
    let deadline = Instant::now() + Duration::from_secs(30);
    while flusher.report().stuck_pages != 0 {
        assert!(Instant::now() < deadline, "still counted stuck");
        thread::sleep(Duration::from_millis(1));
    }
    let r = flusher.stop();
    assert_eq!(store.attempts().len(), 2, "the flusher's, then ours");
    assert_eq!((r.errors, r.retries, r.stuck_pages), (1, 0, 0));
}

/// A completion-based store's sync is called by fsync too.
#[test]
fn fsync_syncs_a_submit_store() {
    struct Dev(AtomicU64);
    impl SubmitStore for Dev {
        fn submit_read(&self, mut io: ReadIo) {
            io.buf().fill(0);
            io.complete(Ok(()));
        }
        fn submit_write(&self, io: WriteIo) {
            io.complete(Ok(()));
        }
    }

    impl StoreControl for Dev {
        fn sync(&self) -> Result<(), StoreError> {
            // Relaxed: a counter.
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }
    let dev = Arc::new(Dev(AtomicU64::new(0)));
    let map = PageMap::with_submit_store(Arc::new(FramePool::new(2).unwrap()), dev.clone());
    map.load(0).unwrap().write(0, b"d").unwrap();
    assert_eq!(map.fsync().unwrap().written, 1);
    // Relaxed: read after the call returned.
    assert_eq!(dev.0.load(Ordering::Relaxed), 1);
}
