//! The fault-side interface (`map_pages`, `refault`, `page_mkwrite`) and the
//! Mapper contract's hand-overs (`clean` through `Harvest`, `reap` of a page
//! that is not a victim), driven with a page table of the test's own: one
//! atomic word per file page, `frame << 8 | flags`, as a kernel linking
//! `pagemap` alone would have.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pagemap::{
    Batching, Error, FrameId, FramePool, Harvest, Mapper, MemStore, PageMap, Pass, ShootdownBatch,
    Victims,
};

const PRESENT: u64 = 1;
const WRITABLE: u64 = 2;
const DIRTY: u64 = 4;
const PAGES: usize = 16;

fn entry(frame: FrameId, bits: u64) -> u64 {
    (u64::from(frame.get()) << 8) | bits
}

fn frame_of(e: u64) -> Option<FrameId> {
    FrameId::new((e >> 8) as u32)
}

/// One shared mapping of file pages `0..PAGES`. No TLBs: nothing caches a
/// translation, so it adds nothing to the batches. `extra_reaped`: what its
/// `reap` also reports (a broken mapper).
#[derive(Default)]
struct Table {
    e: [AtomicU64; PAGES],
    extra_reaped: Mutex<Vec<(u64, FrameId)>>,
}

impl Table {
    fn at(&self, index: u64) -> &AtomicU64 {
        &self.e[index as usize]
    }

    fn get(&self, index: u64) -> u64 {
        self.at(index).load(Ordering::SeqCst)
    }

    fn update(&self, index: u64, f: impl FnMut(u64) -> Option<u64>) -> Result<u64, u64> {
        self.at(index)
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, f)
    }
}

impl Mapper for Table {
    fn file_pages(&self) -> (u64, u64) {
        (0, PAGES as u64 - 1)
    }

    fn is_pinned(&self) -> bool {
        false
    }

    fn revoke(&self, victims: &Victims, _: &mut ShootdownBatch) {
        for &(i, frame) in victims.within(0, PAGES as u64 - 1) {
            let _ = self.update(i, |e| {
                (frame_of(e) == Some(frame) && e & PRESENT != 0).then_some(e & !PRESENT)
            });
        }
    }

    fn reap(&self, victims: &Victims, dirty: &mut dyn FnMut(u64, FrameId)) {
        for &(i, frame) in victims.within(0, PAGES as u64 - 1) {
            let r = self.update(i, |e| {
                (frame_of(e) == Some(frame) && e & PRESENT == 0).then_some(0)
            });
            if r.is_ok_and(|old| old & DIRTY != 0) {
                dirty(i, frame);
            }
        }
        for (i, frame) in self.extra_reaped.lock().unwrap().drain(..) {
            dirty(i, frame);
        }
    }

    fn clean(&self, first: u64, last: u64, _: &mut ShootdownBatch, harvest: &mut Harvest<'_>) {
        for i in first..=last {
            let e = self.get(i);
            let Some(frame) = frame_of(e).filter(|_| e & (WRITABLE | DIRTY) != 0) else {
                continue;
            };
            // Hold first, then take the bit.
            let Some(held) = harvest.hold(i, frame) else {
                continue;
            };
            let r = self.update(i, |e| {
                (frame_of(e) == Some(frame)).then_some(e & !(WRITABLE | DIRTY))
            });
            if r.is_ok_and(|old| old & DIRTY != 0) {
                harvest.dirty(held);
            }
        }
    }

    fn zap(&self, first: u64, last: u64, _: &mut ShootdownBatch) {
        for i in first..=last.min(PAGES as u64 - 1) {
            self.at(i).store(0, Ordering::SeqCst);
        }
    }
}

fn setup() -> (Arc<PageMap>, Arc<MemStore>, Arc<Table>) {
    let store = Arc::new(MemStore::new());
    let map = PageMap::new(Arc::new(FramePool::new(PAGES).unwrap()), store.clone());
    let table = Arc::new(Table::default());
    map.add_mapping(table.clone());
    (map, store, table)
}

/// No page is held any more (every hold taken for a fault or a harvest put).
fn assert_no_holds(map: &PageMap) {
    for i in map.cached_indices(..) {
        assert_eq!(map.holders(i), 0, "page {i} still held");
    }
}

/// A CPU's write through the entry of page `i`: the bytes go into the frame,
/// the dirty bit into the entry (the page's own flag stays clean).
fn cpu_write(map: &PageMap, table: &Table, i: u64, byte: u8) {
    let e = table.get(i);
    assert!(e & PRESENT != 0 && e & WRITABLE != 0, "entry {e:#x}");
    let page = map.find(i).unwrap().unwrap();
    assert_eq!(Some(page.frame()), frame_of(e));
    page.write(0, &[byte; 8]).unwrap();
    page.clear_dirty();
    table.at(i).fetch_or(DIRTY, Ordering::SeqCst);
}

/// The fault of page `i` for a shared writable mapping, as `vmr`'s handler
/// does it.
fn fault(map: &PageMap, table: &Table, i: u64, write: bool) -> Result<(), Error> {
    let touched = if write { WRITABLE | DIRTY } else { 0 };
    loop {
        let old = table.get(i);
        let install = |page: &pagemap::PageRef<'_>| {
            let keep = if frame_of(old) == Some(page.frame()) {
                old & DIRTY
            } else {
                0
            };
            let new = entry(page.frame(), PRESENT | WRITABLE | touched | keep);
            table
                .at(i)
                .compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        };
        let r = match frame_of(old) {
            Some(frame) if old & PRESENT != 0 && write => map.page_mkwrite(i, frame, install),
            Some(frame) => map.refault(i, frame, install),
            None => map.map_page(i, install).map(Some),
        };
        match r {
            Ok(Some(true)) => return Ok(()),
            Ok(Some(false)) => {}
            Ok(None) => {
                let _ = table
                    .at(i)
                    .compare_exchange(old, 0, Ordering::SeqCst, Ordering::SeqCst);
            }
            Err(Error::WouldBlock { .. }) => drop(map.load(i)?),
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn map_pages_maps_cached_up_to_date_pages_up_to_the_end() {
    let (map, _, table) = setup();
    for i in [1, 2, 3, 5, 9] {
        drop(map.load(i).unwrap());
    }
    map.truncate(9);
    // Page 3 already mapped (its entry is left alone), page 2 is the
    // faulting page (refused by `want`).
    fault(&map, &table, 3, false).unwrap();
    let before3 = table.get(3);
    let mut asked = Vec::new();
    let n = map.map_pages(
        0,
        PAGES as u64 - 1,
        |i| {
            asked.push(i);
            i != 2 && table.get(i) == 0
        },
        |page| {
            table
                .at(page.index())
                .compare_exchange(
                    0,
                    entry(page.frame(), PRESENT),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
        },
    );
    assert_eq!(n, 2, "pages 1 and 5");
    assert_eq!(table.get(3), before3);
    for i in [1, 5] {
        let page = map.find(i).unwrap().unwrap();
        assert_eq!(table.get(i), entry(page.frame(), PRESENT));
    }
    for i in [0, 2, 4, 6, 7, 8, 9] {
        assert_eq!(table.get(i) & PRESENT, 0, "page {i}");
    }
    assert_eq!(*asked.last().unwrap(), 9, "the walk stops at the end");
    assert_no_holds(&map);
}

#[test]
fn refault_during_a_removal_keeps_the_page_and_its_dirty_bit() {
    let (map, store, table) = setup();
    fault(&map, &table, 3, true).unwrap();
    cpu_write(&map, &table, 3, 0x33);
    let frame = frame_of(table.get(3)).unwrap();
    let mut removal = map.begin_remove(0..PAGES as u64, Batching::PerSpace);
    assert_eq!(removal.step(), Pass::Marked);
    assert_eq!(removal.step(), Pass::Revoked);
    let revoked = table.get(3);
    assert_eq!(
        revoked & (PRESENT | DIRTY),
        DIRTY,
        "not present, dirty bit kept"
    );
    // The fault: the page is still in `frame`, so it is held (the removal's
    // yank will fail) and the entry is present again, dirty bit kept.
    assert_eq!(
        map.refault(3, frame, |page| {
            assert_eq!(page.frame(), frame);
            table
                .at(3)
                .compare_exchange(
                    revoked,
                    revoked | PRESENT,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
        })
        .unwrap(),
        Some(true)
    );
    let report = removal.finish();
    assert_eq!((report.removed, report.raced), (0, 1), "{report:?}");
    assert_eq!(table.get(3), entry(frame, PRESENT | WRITABLE | DIRTY));
    assert_eq!(map.find(3).unwrap().unwrap().frame(), frame);
    // The dirty bit still reaches the store.
    assert_eq!(map.writeback(..).written, 1);
    assert_eq!(&store.page(3).unwrap()[..8], &[0x33; 8]);
}

#[test]
fn refault_after_the_removal_says_gone_and_the_fault_takes_the_miss_path() {
    let (map, store, table) = setup();
    fault(&map, &table, 3, true).unwrap();
    cpu_write(&map, &table, 3, 0x44);
    let stale = table.get(3);
    let frame = frame_of(stale).unwrap();
    let report = map.remove(..);
    assert_eq!((report.removed, report.written), (1, 1), "{report:?}");
    assert_eq!(table.get(3), 0, "reaped");
    assert_eq!(&store.page(3).unwrap()[..8], &[0x44; 8]);
    // Another page takes the frame; page 3 comes back elsewhere.
    drop(map.load(7).unwrap());
    drop(map.load(3).unwrap());
    let now = map.find(3).unwrap().unwrap().frame();
    assert_ne!(now, frame);
    let mut called = false;
    assert_eq!(map.refault(3, frame, |_| called = true).unwrap(), None);
    assert!(!called);
    // A handler with the stale entry clears it (its CAS fails: reaped) and
    // maps afresh.
    let _ = table
        .at(3)
        .compare_exchange(stale, 0, Ordering::SeqCst, Ordering::SeqCst);
    fault(&map, &table, 3, false).unwrap();
    assert_eq!(frame_of(table.get(3)), Some(now));
    assert_no_holds(&map);
}

#[test]
fn refault_beyond_the_end_is_sigbus() {
    let (map, _, _) = setup();
    let frame = map.load(5).unwrap().frame();
    map.truncate(5);
    assert!(matches!(
        map.refault(5, frame, |_| ()),
        Err(Error::BeyondEof { index: 5, .. })
    ));
}

#[test]
fn page_mkwrite_after_writeback_makes_the_entry_writable_and_dirty() {
    let (map, store, table) = setup();
    fault(&map, &table, 2, true).unwrap();
    cpu_write(&map, &table, 2, 0x21);
    let report = map.writeback(..);
    assert_eq!((report.harvested, report.written), (1, 1), "{report:?}");
    let e = table.get(2);
    assert_eq!(
        e & (PRESENT | WRITABLE | DIRTY),
        PRESENT,
        "write-protected, clean"
    );
    // The next write faults: page_mkwrite.
    fault(&map, &table, 2, true).unwrap();
    assert_eq!(table.get(2), e | WRITABLE | DIRTY);
    cpu_write(&map, &table, 2, 0x22);
    assert_eq!(map.writeback(..).written, 1);
    assert_eq!(&store.page(2).unwrap()[..8], &[0x22; 8]);
}

#[test]
fn clean_hands_over_held_pages_and_holds_nothing_after() {
    let (map, store, table) = setup();
    for i in [0, 4, 8] {
        fault(&map, &table, i, true).unwrap();
        cpu_write(&map, &table, i, i as u8 + 1);
    }
    fault(&map, &table, 9, false).unwrap(); // read-only: not cleaned
    let report = map.writeback(..);
    assert_eq!((report.harvested, report.written), (3, 3), "{report:?}");
    for i in [0, 4, 8] {
        assert_eq!(&store.page(i).unwrap()[..8], &[i as u8 + 1; 8]);
        assert_eq!(table.get(i) & (WRITABLE | DIRTY), 0);
    }
    assert_no_holds(&map);
}

#[test]
fn reap_of_a_page_that_is_not_a_victim_is_counted_and_its_data_kept() {
    let (map, store, table) = setup();
    // Page 1: cached, held by a user (so not a victim), with data only in
    // the frame; a broken mapper reports its dirty bit from the reap.
    let user = map.load(1).unwrap();
    user.write(0, &[0x11; 8]).unwrap();
    user.clear_dirty();
    // Page 2: a victim. Page 6: not cached at all.
    drop(map.load(2).unwrap());
    let ghost = FrameId::new(PAGES as u32).unwrap();
    table
        .extra_reaped
        .lock()
        .unwrap()
        .extend([(1, user.frame()), (6, ghost)]);
    let report = map.remove(..);
    assert_eq!(report.not_victims, 2, "{report:?}");
    assert_eq!(report.removed, 1);
    assert!(
        user.is_dirty(),
        "the non-victim's dirty bit reached its page"
    );
    drop(user);
    assert_eq!(map.writeback(..).written, 1);
    assert_eq!(&store.page(1).unwrap()[..8], &[0x11; 8]);
}
