//! The fault side's contract with truncate, driven deterministically with a
//! toy page table (a kernel's view: `pagemap` alone, its own `Mapper`).
//!
//! A fault inside `map_page`'s callback when truncate moves the end installs
//! its entry; truncate cannot return before the callback does, and its
//! second zap clears that entry. A fault that comes after the truncate gets
//! `BeyondEof` and installs nothing. Users holding the page at their
//! refcount limit stop neither.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use pagemap::{
    Error, FrameId, FramePool, Harvest, Mapper, MemStore, PageMap, ShootdownBatch, Victims,
};

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
    fn reap(&self, _: &Victims, _: &mut dyn FnMut(u64, FrameId)) {}
    fn clean(&self, _: u64, _: u64, _: &mut ShootdownBatch, _: &mut Harvest<'_>) {}
    fn zap(&self, first: u64, last: u64, _: &mut ShootdownBatch) {
        self.entries
            .lock()
            .unwrap()
            .retain(|&i, _| i < first || i > last);
        *self.zaps.lock().unwrap() += 1;
    }
}

fn setup() -> (Arc<PageMap>, Arc<ToyTable>) {
    let map = PageMap::new(
        Arc::new(FramePool::new(16).unwrap()),
        Arc::new(MemStore::new()),
    );
    let table = Arc::new(ToyTable::default());
    map.add_mapping(table.clone());
    (map, table)
}

#[test]
fn truncate_waits_for_a_fault_in_flight_and_zaps_its_entry() {
    let (map, table) = setup();
    map.load(5).unwrap().write(0, b"old").unwrap();
    let held = map.find(5).unwrap().unwrap(); // a user's hold, kept throughout
    let (in_callback, go) = (mpsc::channel(), mpsc::channel::<()>());
    let fault = {
        let (map, table) = (map.clone(), table.clone());
        let (entered, go) = (in_callback.0, go.1);
        thread::spawn(move || {
            // The fault: end checked (page 5 is inside), then it installs
            // in the callback, slowly.
            map.map_page(5, |page| {
                entered.send(()).unwrap();
                go.recv().unwrap();
                table.entries.lock().unwrap().insert(5, page.frame());
            })
        })
    };
    in_callback.1.recv().unwrap();
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
    // fault's callback on the page it must zero.
    while !map.is_beyond_end(5) {
        thread::yield_now();
    }
    thread::sleep(Duration::from_millis(50));
    assert!(
        !done.load(Ordering::SeqCst),
        "truncate returned while a fault was installing a page beyond the new end"
    );
    go.0.send(()).unwrap();
    fault.join().unwrap().unwrap();
    let report = truncating.join().unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.zeroed, 1, "held: zeroed, not removed");
    assert!(
        table.entries.lock().unwrap().is_empty(),
        "the entry the fault installed survived"
    );
    assert_eq!(*table.zaps.lock().unwrap(), 2, "zap, zero, zap again");
    let mut buf = [0xffu8; 3];
    held.read(0, &mut buf).unwrap();
    assert_eq!(buf, [0; 3], "the cut page was zeroed");
    // A fault that comes now is refused, though the page is still cached.
    assert!(matches!(
        map.map_page(5, |_| unreachable!("beyond the end: no callback")),
        Err(Error::BeyondEof { index: 5, end: 3 })
    ));
    assert_eq!(held.holders(), 1, "the refused fault left no count behind");
}

#[test]
fn truncate_is_not_held_up_by_users_at_the_refcount_limit() {
    let (map, table) = setup();
    drop(map.load(5).unwrap());
    let first = map.find(5).unwrap().unwrap();
    let mut refs = Vec::new();
    while let Ok(r) = first.try_clone() {
        refs.push(r);
    }
    assert_eq!(first.holders(), pagemap::MAX_REFS);
    // A fault still maps the page (its hold comes from the reserve)...
    map.map_page(5, |p| table.entries.lock().unwrap().insert(5, p.frame()))
        .unwrap();
    // ...and truncate still zeroes it and clears the entry.
    let r = map.truncate(5);
    assert_eq!((r.zeroed, r.referenced), (1, 1));
    assert!(table.entries.lock().unwrap().is_empty());
}

#[test]
fn a_fault_inside_the_file_does_not_hold_up_truncate() {
    let (map, _table) = setup();
    drop(map.load(1).unwrap());
    drop(map.load(7).unwrap());
    let report = map
        // (Calling truncate in the callback is allowed only because page 1
        // stays inside the file; a cut page would wait for this very call.)
        .map_page(1, |_| map.truncate(4))
        .unwrap();
    assert_eq!(report.removed, 1);
    assert!(map.map_page(1, |_| ()).is_ok());
}

#[test]
fn map_page_refuses_what_a_fault_cannot_map_without_blocking() {
    let (map, _table) = setup();
    assert!(matches!(
        map.map_page(2, |_| ()),
        Err(Error::WouldBlock { index: 2 })
    ));
    map.truncate(10);
    assert!(matches!(
        map.map_page(10, |_| ()),
        Err(Error::BeyondEof { .. })
    ));
    drop(map.load(2).unwrap());
    // Nested calls (as fault-around inside a fault would be): each counts.
    let n = map
        .map_page(2, |a| map.map_page(2, |_| a.holders()).unwrap())
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(map.holders(2), 0);
}
