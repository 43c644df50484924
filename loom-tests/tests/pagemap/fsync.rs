//! `fsync` against a background write-back (a flusher's round) whose write
//! fails: fsync never returns Ok while the page's bytes are not in the
//! store, and the background error is reported by exactly one fsync, never
//! swallowed (Linux's errseq_t), while an fsync's own error is not reported
//! twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use loom_tests::bytes::FIRST;
use loom_tests::{dirty, explore, spawn_with, Bound, Fixture};
use pagemap::{BackingStore, MemStore, PageBuf, PageMap, PageSrc, StoreControl, StoreError};

const IDX: u64 = 1;

/// A store whose first write fails, whoever makes it. Its flag is a std
/// atomic: the store is outside the page cache (as `MemStore`'s own lock),
/// and loom runs one thread at a time, so it adds no interleavings.
struct FailFirst {
    inner: MemStore,
    failed: AtomicBool,
}

impl BackingStore for FailFirst {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        self.inner.read_page(index, buf)
    }

    fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError> {
        // SeqCst: one flag, no data behind it (threads run one at a time).
        if !self.failed.swap(true, Ordering::SeqCst) {
            return Err(StoreError::new(StoreError::EIO));
        }
        self.inner.write_page(index, src)
    }
}

impl StoreControl for FailFirst {}

/// A map over a [`FailFirst`] store with page `IDX` dirty (FIRST written,
/// not held). The fixture comes first: it registers the epoch handle, and
/// its pool serves the map; keep it alive for the model's length.
fn failing_first_with_a_dirty_page() -> (Fixture, Arc<FailFirst>, Arc<PageMap>) {
    let fx = Fixture::new(2);
    let store = Arc::new(FailFirst {
        inner: MemStore::new(),
        failed: AtomicBool::new(false),
    });
    let map = PageMap::new(fx.pool.clone(), store.clone());
    drop(dirty(&map, IDX, FIRST));
    (fx, store, map)
}

#[test]
fn fsync_vs_failing_background_writeback() {
    explore(Bound::Env, || {
        let (_fx, store, map) = failing_first_with_a_dirty_page();
        let bg = spawn_with(&map, |map| map.writeback(..).errors.len());
        let first = map.fsync();
        let bg_errors = bg.join().unwrap();
        if first.is_ok() {
            assert_eq!(
                store.inner.page(IDX).expect("fsync Ok: stored")[..8],
                [FIRST; 8],
                "fsync returned Ok before the bytes were stored"
            );
        }
        let second = map.fsync();
        let earlier = |r: &Result<_, pagemap::FsyncError>| {
            r.as_ref().err().is_some_and(|e| e.earlier.is_some())
        };
        // The background error is reported once; the fsync's own is not
        // kept for the next one.
        let reports = usize::from(earlier(&first)) + usize::from(earlier(&second));
        assert_eq!(reports, bg_errors, "first {first:?}, second {second:?}");
        // Nothing left for the second fsync to fail on but a kept error.
        assert!(second.is_ok() || earlier(&second), "{second:?}");
        assert_eq!(store.inner.page(IDX).unwrap()[..8], [FIRST; 8]);
        assert!(map.dirty_indices(..).is_empty());
        let own = first
            .as_ref()
            .err()
            .is_some_and(|e| !e.report.errors.is_empty());
        format!(
            "bg_failed={} fsync_own_error={own} reported_by={}",
            bg_errors == 1,
            if earlier(&first) {
                "first"
            } else if earlier(&second) {
                "second"
            } else {
                "none"
            }
        )
    })
    .assert_seen(&[
        // fsync wrote first and failed; the background write stored it.
        "bg_failed=false fsync_own_error=true reported_by=none",
        // The background write failed; fsync waited for it, stored the
        // page itself and reported the background error.
        "bg_failed=true fsync_own_error=false reported_by=first",
    ]);
}

/// Two fsyncs, the first write failing: one may take the other's TOWRITE
/// tag and fail; the other then waits for that write and must report its
/// error (kept even though it was an fsync's own), not return Ok.
#[test]
fn fsync_vs_fsync_with_a_failing_write() {
    explore(Bound::Env, || {
        let (_fx, store, map) = failing_first_with_a_dirty_page();
        let other = spawn_with(&(map.clone(), store.clone()), |(map, store)| {
            let r = map.fsync();
            if r.is_ok() {
                assert_eq!(store.inner.page(IDX).expect("Ok: stored")[..8], [FIRST; 8]);
            }
            r.is_ok()
        });
        let r = map.fsync();
        if r.is_ok() {
            assert_eq!(store.inner.page(IDX).expect("Ok: stored")[..8], [FIRST; 8]);
        }
        let other_ok = other.join().unwrap();
        // Every error was reported by one of them: nothing is left.
        let last = map.fsync();
        assert!(last.is_ok(), "{last:?}");
        assert_eq!(store.inner.page(IDX).unwrap()[..8], [FIRST; 8]);
        format!("ok={}", u8::from(r.is_ok()) + u8::from(other_ok))
    })
    .assert_seen(&["ok=1", "ok=0"]);
}
