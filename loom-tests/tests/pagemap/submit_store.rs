//! The completion-based store ([`SubmitStore`]): a request completed on
//! another thread (a device's interrupt) against the loader or write-back
//! that submitted it and sleeps on the frame's INFLIGHT bit.
//!
//! The race: the completion records its outcome (an error in the frame's
//! flags) and clears INFLIGHT (Release), while the submitter sleeps on the
//! bit and then reads the outcome. The outcome must be recorded before the
//! bit clears, and the wake-up must not be lost. Mutants K01 (the read's
//! completion clears the bit before recording its error) and K02 (the same
//! for a write-back) are killed here: the submitter takes a failed read for
//! a good one (a page of garbage marked up to date), or a failed write-back
//! for a stored one (a clean page whose data the store never got).

use loom_tests::{explore, Bound};
use pagemap::{
    flags, BackingStore, Error, FramePool, MemStore, PageMap, ReadIo, StoreControl, StoreError,
    SubmitStore, WriteIo, PAGE_SIZE,
};

/// A device that completes every request on a thread of its own, failing
/// or not as built.
struct Device {
    mem: std::sync::Arc<MemStore>,
    /// Read by the submitter (program order with the model's toggles).
    fail: std::sync::atomic::AtomicBool,
}

impl SubmitStore for Device {
    fn submit_read(&self, mut io: ReadIo) {
        let mem = self.mem.clone();
        let fail = self.fail.load(std::sync::atomic::Ordering::Relaxed);
        loom::thread::spawn(move || {
            if fail {
                io.complete(Err(StoreError::new(StoreError::EIO)));
            } else {
                let r = mem.read_page(io.index(), io.buf());
                io.complete(r);
            }
        });
    }

    fn submit_write(&self, io: WriteIo) {
        let mem = self.mem.clone();
        let fail = self.fail.load(std::sync::atomic::Ordering::Relaxed);
        loom::thread::spawn(move || {
            if fail {
                io.complete(Err(StoreError::new(StoreError::EIO)));
            } else {
                let r = mem.write_page(io.index(), io.src());
                io.complete(r);
            }
        });
    }
}

impl StoreControl for Device {}

fn map_over(fail: bool, byte: u8) -> (std::sync::Arc<Device>, std::sync::Arc<PageMap>) {
    let mem = std::sync::Arc::new(MemStore::new());
    mem.set_page(1, &[byte; PAGE_SIZE]);
    let pool = std::sync::Arc::new(FramePool::new(2).unwrap());
    let dev = std::sync::Arc::new(Device {
        mem,
        fail: std::sync::atomic::AtomicBool::new(fail),
    });
    (dev.clone(), PageMap::with_submit_store(pool, dev))
}

/// A load whose read completes on a device thread: the loader sleeps until
/// then (no lost wake-up) and gets the store's bytes; meanwhile a lock-free
/// lookup never sees the page before it is up to date.
#[test]
fn a_load_sleeps_until_the_device_completes() {
    explore(Bound::Env, || {
        let (_mem, map) = map_over(false, 0x5a);
        let m2 = map.clone();
        let finder = loom::thread::spawn(move || match m2.find(1).unwrap() {
            Some(page) => {
                assert_eq!(loom_tests::page_prefix(&page, 1)[0], 0x5a);
                "found"
            }
            None => "absent",
        });
        let page = map.load(1).unwrap();
        assert_eq!(loom_tests::page_prefix(&page, 1)[0], 0x5a);
        assert_eq!(page.flags() & flags::INFLIGHT, 0);
        drop(page);
        finder.join().unwrap()
    })
    .assert_seen(&["absent", "found"]);
}

/// A read the device fails: the loader gets the device's errno, never a
/// page marked up to date.
#[test]
fn a_failed_completion_is_never_taken_for_data() {
    explore(Bound::Env, || {
        let (_mem, map) = map_over(true, 0x5a);
        match map.load(1) {
            Err(Error::Read { index: 1, source }) => assert_eq!(source.code(), StoreError::EIO),
            Ok(page) => panic!(
                "a failed read was taken for data: {:?} holds {:#x}",
                page,
                loom_tests::page_prefix(&page, 1)[0]
            ),
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(map.find(1).unwrap().is_none());
        "read_error"
    })
    .assert_seen(&["read_error"]);
}

/// A write-back the device fails: the page stays dirty with its data,
/// and the next write-back stores it.
#[test]
fn a_failed_write_back_keeps_the_page_dirty() {
    explore(Bound::Env, || {
        let (dev, map) = map_over(false, 0x01);
        map.load(1).unwrap().write(0, &[0x77]).unwrap();
        dev.fail.store(true, std::sync::atomic::Ordering::Relaxed);
        let r = map.writeback(..);
        match &r.errors[..] {
            [Error::Write { index: 1, source }] => assert_eq!(source.code(), StoreError::EIO),
            other => panic!("a failed write-back was taken for a stored one: {other:?}"),
        }
        let page = map.find(1).unwrap().unwrap();
        assert!(page.is_dirty(), "a failed write-back cleaned the page");
        assert_eq!(page.flags() & flags::INFLIGHT, 0);
        drop(page);
        dev.fail.store(false, std::sync::atomic::Ordering::Relaxed);
        let r = map.writeback(..);
        assert!(r.errors.is_empty() && r.written == 1);
        assert_eq!(dev.mem.page(1).unwrap()[0], 0x77);
        "kept"
    })
    .assert_seen(&["kept"]);
}
