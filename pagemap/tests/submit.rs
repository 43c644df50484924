//! The completion-based store ([`SubmitStore`]): loads and write-backs
//! submit requests that complete later, on other threads or inline; errors
//! and dropped requests reach the caller; concurrent loaders of one page
//! cause one read; data goes straight into and out of the frames.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use pagemap::{
    flags, BackingStore, Error, FramePool, MemStore, PageMap, ReadIo, StoreControl, StoreError,
    SubmitStore, WriteIo, PAGE_SIZE,
};

/// What the device does with a request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Complete on a thread of its own after a short delay.
    Thread,
    /// Complete before `submit_*` returns.
    Inline,
    /// Fail with this errno.
    Fail(i32),
    /// Drop the request without completing it.
    Drop,
}

/// A device over a MemStore, completing as `mode` says.
struct Device {
    mem: MemStore,
    mode: Mutex<Mode>,
    reads: AtomicU64,
    writes: AtomicU64,
}

impl Device {
    fn new(mode: Mode) -> Arc<Self> {
        Arc::new(Self {
            mem: MemStore::new(),
            mode: Mutex::new(mode),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        })
    }
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

impl SubmitStore for Device {
    fn submit_read(&self, mut io: ReadIo) {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let mode = *self.mode.lock().unwrap();
        let mut page = [0u8; PAGE_SIZE];
        let r = self.mem.read_page(io.index(), &mut page);
        match mode {
            Mode::Inline => {
                io.buf().copy_from_slice(&page);
                io.complete(r);
            }
            Mode::Thread => {
                thread::spawn(move || {
                    thread::sleep(Duration::from_millis(5));
                    io.buf().copy_from_slice(&page);
                    io.complete(r);
                });
            }
            Mode::Fail(code) => io.complete(Err(StoreError::new(code))),
            Mode::Drop => drop(io),
        }
    }

    fn submit_write(&self, io: WriteIo) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Inline => {
                let r = self.mem.write_page(io.index(), io.src());
                io.complete(r);
            }
            Mode::Thread => {
                let mut page = [0u8; PAGE_SIZE];
                io.src().copy_to(&mut page);
                let index = io.index();
                thread::spawn(move || {
                    thread::sleep(Duration::from_millis(5));
                    let _ = index;
                    io.complete(Ok(()));
                });
                self.mem.set_page(index, &page);
            }
            Mode::Fail(code) => io.complete(Err(StoreError::new(code))),
            Mode::Drop => drop(io),
        }
    }
}

impl StoreControl for Device {}

fn map_over(dev: &Arc<Device>, frames: usize) -> Arc<PageMap> {
    PageMap::with_submit_store(Arc::new(FramePool::new(frames).unwrap()), dev.clone())
}

#[test]
fn loads_and_writebacks_complete_on_other_threads_or_inline() {
    for mode in [Mode::Thread, Mode::Inline] {
        let dev = Device::new(mode);
        dev.mem.set_page(3, &[0x33; PAGE_SIZE]);
        let map = map_over(&dev, 8);
        let page = map.load(3).unwrap();
        let mut b = [0u8; 4];
        page.read(4092, &mut b).unwrap();
        assert_eq!(b, [0x33; 4]);
        assert_eq!(page.flags() & flags::INFLIGHT, 0);
        page.write(0, b"new").unwrap();
        drop(page);
        let r = map.writeback(..);
        assert!(r.errors.is_empty());
        assert_eq!(r.written, 1);
        assert_eq!(&dev.mem.page(3).unwrap()[..3], b"new");
        assert_eq!(dev.reads.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn a_failed_read_reaches_the_loader_with_its_errno() {
    let dev = Device::new(Mode::Fail(StoreError::ENOSPC));
    let map = map_over(&dev, 4);
    match map.load(1) {
        Err(Error::Read { index: 1, source }) => assert_eq!(source.code(), StoreError::ENOSPC),
        other => panic!("{other:?}"),
    }
    // Not left locked or in flight; a later load retries and succeeds.
    dev.set(Mode::Inline);
    let page = map.load(1).unwrap();
    assert_eq!(
        page.flags() & (flags::LOCKED | flags::INFLIGHT | flags::ERROR),
        0
    );
}

#[test]
fn a_dropped_request_is_a_cancelled_error_not_a_hang() {
    let dev = Device::new(Mode::Drop);
    let map = map_over(&dev, 4);
    match map.load(2) {
        Err(Error::Read { source, .. }) => assert_eq!(source.code(), StoreError::ECANCELED),
        other => panic!("{other:?}"),
    }
    dev.set(Mode::Inline);
    let page = map.load(2).unwrap();
    page.write(0, b"x").unwrap();
    drop(page);
    dev.set(Mode::Drop);
    let r = map.writeback(..);
    assert!(
        matches!(&r.errors[..], [Error::Write { index: 2, source }] if source.code() == StoreError::ECANCELED)
    );
    // Kept dirty, with its data: written once the device works.
    dev.set(Mode::Inline);
    let r = map.writeback(..);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.written, 1);
    assert_eq!(dev.mem.page(2).unwrap()[0], b'x');
}

#[test]
fn a_failed_write_keeps_the_page_dirty_with_its_errno() {
    let dev = Device::new(Mode::Inline);
    let map = map_over(&dev, 4);
    map.load(5).unwrap().write(10, b"keep").unwrap();
    dev.set(Mode::Fail(StoreError::EIO));
    let r = map.writeback(..);
    match &r.errors[..] {
        [Error::Write { index: 5, source }] => assert_eq!(source.code(), StoreError::EIO),
        other => panic!("{other:?}"),
    }
    let page = map.find(5).unwrap().unwrap();
    assert!(page.is_dirty());
    assert_eq!(page.flags() & flags::INFLIGHT, 0);
    drop(page);
    // free_unused cannot drop it: its write fails too, and it stays.
    let f = map.free_unused();
    assert_eq!((f.freed, f.errors.len()), (0, 1));
    dev.set(Mode::Thread);
    let f = map.free_unused();
    assert_eq!((f.freed, f.written), (1, 1));
    assert_eq!(&dev.mem.page(5).unwrap()[10..14], b"keep");
}

#[test]
fn concurrent_loaders_of_one_page_cause_one_read() {
    let dev = Device::new(Mode::Thread);
    dev.mem.set_page(9, &[9; PAGE_SIZE]);
    let map = Arc::new(map_over(&dev, 4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let map = map.clone();
            thread::spawn(move || {
                let page = map.load(9).unwrap();
                let mut b = [0u8; 1];
                page.read(4095, &mut b).unwrap();
                b[0]
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 9);
    }
    assert_eq!(dev.reads.load(Ordering::SeqCst), 1);
}
