//! The fault side's contract with truncate, driven deterministically with a
//! toy page table (a kernel's view: `pagemap` alone, its own `Mapper`).
//!
//! A fault that took its `MapGuard` before truncate moved the end installs
//! its entry; truncate cannot return before the guard is dropped, and its
//! second zap clears that entry. A fault that takes the guard after the
//! truncate gets `BeyondEof` and installs nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use pagemap::{Error, FrameId, FramePool, Mapper, MemStore, PageMap, ShootdownBatch, Victims};

/// A page table of one mapping of the whole file: index -> frame.
#[derive(Default)]
struct ToyTable {
    entries: Mutex<BTreeMap<u64, FrameId>>,
    zaps: Mutex<u32>,
}

impl Mapper for ToyTable {
    fn file_pages(&self) -> (u64, u64) {
        (0, 1023)
    }
    fn is_pinned(&self) -> bool {
        false
    }
    fn revoke(&self, _: &Victims, _: &mut ShootdownBatch) {}
    fn reap(&self, _: &Victims, _: &mut dyn FnMut(u64)) {}
    fn clean(&self, _: u64, _: u64, _: &mut ShootdownBatch, _: &mut dyn FnMut(u64, FrameId)) {}
    fn zap(&self, first: u64, last: u64, _: &mut ShootdownBatch) {
        self.entries
            .lock()
            .unwrap()
            .retain(|&i, _| i < first || i > last);
        *self.zaps.lock().unwrap() += 1;
    }
}

fn setup() -> (Arc<PageMap>, Arc<ToyTable>) {
    let map = Arc::new(PageMap::new(
        Arc::new(FramePool::new(16).unwrap()),
        Arc::new(MemStore::new()),
    ));
    let table = Arc::new(ToyTable::default());
    map.add_mapping(table.clone());
    (map, table)
}

#[test]
fn truncate_waits_for_a_fault_in_flight_and_zaps_its_entry() {
    let (map, table) = setup();
    map.load(5).unwrap().write(0, b"old").unwrap();
    // The fault: page taken, guard held (end checked: page 5 is inside).
    let page = map.load_nowait(5).unwrap();
    let guard = page.lock_for_map().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let truncating = {
        let (map, done) = (map.clone(), done.clone());
        thread::spawn(move || {
            let r = map.truncate(3);
            done.store(true, Ordering::SeqCst);
            r
        })
    };
    // Truncate has moved the end and zapped once, and now waits for the
    // page lock of the page it must zero.
    while !map.is_beyond_end(5) {
        thread::yield_now();
    }
    thread::sleep(Duration::from_millis(50));
    assert!(
        !done.load(Ordering::SeqCst),
        "truncate returned while a fault held a page beyond the new end"
    );
    // The fault installs its entry under the guard, then lets go.
    table.entries.lock().unwrap().insert(5, page.frame());
    drop(guard);
    let report = truncating.join().unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.zeroed, 1, "held by the fault: zeroed, not removed");
    assert!(
        table.entries.lock().unwrap().is_empty(),
        "the entry installed before truncate locked the page survived"
    );
    assert_eq!(*table.zaps.lock().unwrap(), 2, "zap, zero, zap again");
    let mut buf = [0xffu8; 3];
    page.read(0, &mut buf).unwrap();
    assert_eq!(buf, [0; 3], "the cut page was zeroed");
    // A fault that comes now is refused under the lock.
    assert!(matches!(
        page.lock_for_map(),
        Err(Error::BeyondEof { index: 5, end: 3 })
    ));
    assert!(page.try_lock_for_map().unwrap().is_err());
    drop(page);
    assert!(matches!(map.load_nowait(5), Err(Error::BeyondEof { .. })));
}

#[test]
fn a_guard_inside_the_file_does_not_stop_truncate_elsewhere() {
    let (map, _table) = setup();
    drop(map.load(1).unwrap());
    drop(map.load(7).unwrap());
    let page = map.load_nowait(1).unwrap();
    let guard = page.lock_for_map().unwrap();
    // Page 1 stays inside: truncate never locks it.
    let report = map.truncate(4);
    assert_eq!(report.removed, 1);
    drop(guard);
    assert!(page.try_lock_for_map().unwrap().is_ok());
}

#[test]
fn try_lock_for_map_skips_a_locked_page() {
    let (map, _table) = setup();
    drop(map.load(2).unwrap());
    let a = map.load_nowait(2).unwrap();
    let b = map.load_nowait(2).unwrap();
    let guard = a.lock_for_map().unwrap();
    assert!(b.try_lock_for_map().is_none(), "fault-around must not wait");
    drop(guard);
    assert!(matches!(b.try_lock_for_map(), Some(Ok(_))));
}
