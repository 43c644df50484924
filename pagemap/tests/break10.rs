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
