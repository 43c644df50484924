//! Issue 10 review (break10): a page map built WITHOUT the `std` feature,
//! run on the host with a std-backed `Platform` as `pagemap::platform`'s
//! docs describe (`cargo test -p pagemap --no-default-features --test
//! break10_nostd`). With `std` on, the test is empty (the platform would be
//! ignored).
#![cfg(not(feature = "std"))]

use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use pagemap::platform::{epoch, set_platform, Platform};
use pagemap::{FramePool, MemStore, PageMap};

struct Stand;
static QUEUES: [(Mutex<()>, Condvar); 16] = [const { (Mutex::new(()), Condvar::new()) }; 16];
static COLLECTOR: std::sync::LazyLock<epoch::Collector> =
    std::sync::LazyLock::new(epoch::Collector::new);
thread_local! {
    static HANDLE: epoch::LocalHandle = COLLECTOR.register();
}

impl Platform for Stand {
    fn park(&self, key: usize, should_park: &dyn Fn() -> bool) {
        let (m, cv) = &QUEUES[key / 8 % 16];
        let g = m.lock().unwrap();
        if should_park() {
            drop(cv.wait(g).unwrap());
        }
    }
    fn unpark_all(&self, key: usize) {
        let (m, cv) = &QUEUES[key / 8 % 16];
        drop(m.lock().unwrap());
        cv.notify_all();
    }
    fn pin(&self) -> epoch::Guard {
        HANDLE.with(|h| h.pin())
    }
}

static STAND: Stand = Stand;

#[test]
fn a_no_std_page_map_runs_on_the_host() {
    let _ = set_platform(&STAND);
    let store = Arc::new(MemStore::new());
    let map = PageMap::new(Arc::new(FramePool::new(64).unwrap()), store.clone());
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let map = map.clone();
            thread::spawn(move || {
                for i in 0..200u64 {
                    let index = i % 32;
                    let page = map.load(index).unwrap();
                    page.write(t as usize, &[t + 1]).unwrap();
                    drop(page);
                    if i % 50 == 0 {
                        map.writeback(..);
                        map.remove(index..index + 4);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    map.writeback(..);
    let mut b = [0u8; 4];
    for index in 0..32 {
        map.load(index).unwrap().read(0, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4], "page {index}");
    }
    map.remove(..);
    assert_eq!(map.nr_pages(), 0);
}
