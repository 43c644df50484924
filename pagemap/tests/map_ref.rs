//! The fault side's contract with truncate, driven deterministically with a
//! toy page table (a kernel's view: `pagemap` alone, its own `Mapper`).
//!
//! A fault that took its `MapRef` before truncate moved the end installs
//! its entry; truncate cannot return before the `MapRef` is dropped, and its
//! second zap clears that entry. A fault that comes after the truncate gets
//! `BeyondEof` and installs nothing.

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
    // The fault: page taken for mapping (end checked: page 5 is inside).
    let page = map.get_for_map(5).unwrap();
    let held = map.find(5).unwrap().unwrap(); // a user's hold, kept throughout
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
    // fault to finish on the page it must zero.
    while !map.is_beyond_end(5) {
        thread::yield_now();
    }
    thread::sleep(Duration::from_millis(50));
    assert!(
        !done.load(Ordering::SeqCst),
        "truncate returned while a fault held a page beyond the new end"
    );
    // The fault installs its entry, then lets go.
    table.entries.lock().unwrap().insert(5, page.frame());
    drop(page);
    let report = truncating.join().unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.zeroed, 1, "held: zeroed, not removed");
    assert!(
        table.entries.lock().unwrap().is_empty(),
        "the entry installed before truncate locked the page survived"
    );
    assert_eq!(*table.zaps.lock().unwrap(), 2, "zap, zero, zap again");
    let mut buf = [0xffu8; 3];
    held.read(0, &mut buf).unwrap();
    assert_eq!(buf, [0; 3], "the cut page was zeroed");
    // A fault that comes now is refused, though the page is still cached.
    assert!(matches!(
        map.get_for_map(5),
        Err(Error::BeyondEof { index: 5, end: 3 })
    ));
    assert_eq!(held.holders(), 1, "the refused get left no count behind");
}

#[test]
fn a_fault_inside_the_file_does_not_hold_up_truncate() {
    let (map, _table) = setup();
    drop(map.load(1).unwrap());
    drop(map.load(7).unwrap());
    let page = map.get_for_map(1).unwrap();
    // Page 1 stays inside: truncate never waits for it.
    let report = map.truncate(4);
    assert_eq!(report.removed, 1);
    drop(page);
    assert!(map.get_for_map(1).is_ok());
}

#[test]
fn get_for_map_refuses_what_a_fault_cannot_map_without_blocking() {
    let (map, _table) = setup();
    assert!(matches!(
        map.get_for_map(2),
        Err(Error::WouldBlock { index: 2 })
    ));
    map.truncate(10);
    assert!(matches!(map.get_for_map(10), Err(Error::BeyondEof { .. })));
    drop(map.load(2).unwrap());
    // Many faults on one page at once: all get it (the mapping field's
    // limit only makes the sixteenth wait for one of the first fifteen).
    let refs: Vec<_> = (0..15).map(|_| map.get_for_map(2).unwrap()).collect();
    assert_eq!(refs[0].holders(), 15);
    drop(refs);
    assert_eq!(map.holders(2), 0);
}
