//! A read error goes to the loader and to the waiters *of that read*; a
//! load that starts after that read has finished retries the read.
//!
//! The store fails its first read only. The main thread loads (the read
//! fails; it gets `Error::Read`), while a spawned loader may wait for that
//! read (then it also gets `Error::Read`, legitimately, and its reference
//! keeps the failed page from being discarded). Then the main thread loads
//! again: that load began after the failed read was over, the store is
//! healthy, so it must succeed.
//!
//! The failing read waits (yielding, so no preemption is spent) until the
//! other loader holds the page too, so the interesting case, a waiter of
//! the failed read, is reached in every execution at a low preemption bound.
//!
//! (It had its own binary, as loom aborts the binary on a failure; now a
//! failure here stops the models after it in the `pagemap` binary.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use loom::thread;
use loom_tests::{explore, spawn_with, Bound};
use pagemap::{BackingStore, Error, FramePool, MemStore, PageBuf, PageMap, StoreControl};

/// Fails the first read (once both loaders hold the page), then behaves.
#[derive(Default)]
struct FailOnce {
    inner: MemStore,
    reads: AtomicUsize,
    map: std::sync::OnceLock<std::sync::Weak<PageMap>>,
}

impl BackingStore for FailOnce {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), pagemap::StoreError> {
        if self.reads.fetch_add(1, Ordering::SeqCst) == 0 {
            let map = self.map.get().and_then(|m| m.upgrade()).expect("map");
            while map.holders(index) < 2 {
                thread::yield_now();
            }
            return Err(pagemap::StoreError::new(pagemap::StoreError::EIO));
        }
        self.inner.read_page(index, buf)
    }

    fn write_page(&self, index: u64, buf: pagemap::PageSrc<'_>) -> Result<(), pagemap::StoreError> {
        self.inner.write_page(index, buf)
    }
}

impl StoreControl for FailOnce {}

#[test]
fn load_after_failed_read_retries() {
    explore(Bound::Env, || {
        drop(crossbeam_epoch::pin());
        let pool = Arc::new(FramePool::new(3).unwrap());
        let store = Arc::new(FailOnce::default());
        store.inner.set_page(1, &[0x31; pagemap::PAGE_SIZE]);
        let map = PageMap::new(pool, store.clone());
        store.map.set(Arc::downgrade(&map)).ok().unwrap();

        let other = spawn_with(&map, |map| match map.load(1) {
            Ok(_) => "ok",
            Err(Error::Read { .. }) => "read_error",
            Err(e) => panic!("unexpected {e}"),
        });
        // First load: succeeds only if the other loader did the failing read
        // first and this one retried.
        let first = match map.load(1) {
            Ok(_) => "ok",
            Err(Error::Read { .. }) => "read_error",
            Err(e) => panic!("unexpected {e}"),
        };
        let reads_before_second = store.reads.load(Ordering::SeqCst);
        // The failed read (whoever did it) is over by now (the store has
        // been read at least once); this load started after it.
        assert!(reads_before_second >= 1);
        let second = map.load(1).map(|_| ());
        let o = other.join().unwrap();
        assert!(
            second.is_ok(),
            "a load that started after the failed read ended got its error: {second:?} \
             (first={first}, other={o}, reads={})\n{}",
            store.reads.load(Ordering::SeqCst),
            map.dump()
        );
        format!("first={first} other={o}")
    })
    .assert_seen(&["first=read_error other=read_error"]);
}
