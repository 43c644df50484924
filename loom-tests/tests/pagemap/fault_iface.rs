//! The fault-side interface (`pagemap::PageMap::map_pages`, `refault`)
//! against truncate and a removal, with a page table of the model's own
//! (as a kernel linking `pagemap` alone would have): two entries, one per
//! file page, each an atomic word `frame << 8 | DIRTY | PRESENT`. No TLBs:
//! nothing caches a translation, so the batch's shootdowns are not needed.
//!
//! * `fault_around_vs_truncate`: a fault maps pages 0 and 1 with
//!   `map_pages` while the file is truncated at page 1. When truncate
//!   returns, and after the fault, no entry maps page 1. Killed by F01
//!   (`map_pages` installing under a plain hold, which truncate does not
//!   wait for) and T03 (the end checked only before the count).
//! * `refault_vs_yank`: a removal of page 0 has revoked its dirty entry
//!   when a fault finds it and refaults it, while the removal reaps, writes
//!   back and yanks. Afterwards the entry, if present, maps the page the
//!   map caches at 0 (never a freed frame), and the write behind the dirty
//!   bit is stored or still cached and dirty (in the page or the entry).
//!   Killed by F02 (the fault's get keeping `REMOVAL`, so the yank frees
//!   the page it just made present again).

use loom::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use loom_tests::{bytes, explore, is_free, page_prefix, spawn_with, Bound, Fixture};
use pagemap::{Batching, Error, FrameId, Harvest, Mapper, PageMap, Pass, ShootdownBatch, Victims};

pub(crate) const PRESENT: u64 = 1;
const DIRTY: u64 = 2;

pub(crate) fn entry(frame: FrameId, bits: u64) -> u64 {
    (u64::from(frame.get()) << 8) | bits
}

pub(crate) fn frame_of(e: u64) -> Option<FrameId> {
    FrameId::new((e >> 8) as u32)
}

/// One mapping of file pages 0 and 1 (all entry updates SeqCst: a kernel's
/// page-table words are read-modify-written atomically).
#[derive(Default)]
pub(crate) struct Table {
    e: [AtomicU64; 2],
}

impl Table {
    pub(crate) fn at(&self, index: u64) -> &AtomicU64 {
        &self.e[index as usize]
    }
}

impl Mapper for Table {
    fn file_pages(&self) -> (u64, u64) {
        (0, 1)
    }

    fn is_pinned(&self) -> bool {
        false
    }

    fn revoke(&self, victims: &Victims, _: &mut ShootdownBatch) {
        for &(index, frame) in victims.within(0, 1) {
            let _ = self
                .at(index)
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |e| {
                    (frame_of(e) == Some(frame) && e & PRESENT != 0).then_some(e & !PRESENT)
                });
        }
    }

    fn reap(&self, victims: &Victims, dirty: &mut dyn FnMut(u64, FrameId)) {
        for &(index, frame) in victims.within(0, 1) {
            let r = self
                .at(index)
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |e| {
                    (frame_of(e) == Some(frame) && e & PRESENT == 0).then_some(0)
                });
            if r.is_ok_and(|old| old & DIRTY != 0) {
                dirty(index, frame);
            }
        }
    }

    fn clean(&self, first: u64, last: u64, _: &mut ShootdownBatch, harvest: &mut Harvest<'_>) {
        for index in first..=last {
            let e = self.at(index).load(Ordering::SeqCst);
            let Some(frame) = frame_of(e).filter(|_| e & DIRTY != 0) else {
                continue;
            };
            let Some(held) = harvest.hold(index, frame) else {
                continue;
            };
            if self
                .at(index)
                .compare_exchange(e, e & !DIRTY, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                harvest.dirty(held);
            }
        }
    }

    fn zap(&self, first: u64, last: u64, _: &mut ShootdownBatch) {
        for index in first..=last.min(1) {
            self.at(index).swap(0, Ordering::SeqCst);
        }
    }
}

pub(crate) fn mapped(frames: usize) -> (Fixture, Arc<Table>) {
    let fx = Fixture::new(frames);
    let table = Arc::new(Table::default());
    fx.map.add_mapping(table.clone());
    (fx, table)
}

/// A fault maps the cached pages 0 and 1 by fault-around while the file is
/// truncated at page 1. `held`: a user holds page 1 throughout, so the
/// removal does not write its slot word and only the store-buffering pair
/// orders the fault's count against truncate's end.
fn fault_around_vs_truncate(held: bool) {
    explore(Bound::Env, move || {
        let (fx, table) = mapped(3);
        fx.store_page(0, bytes::OLD);
        fx.store_page(1, bytes::OLD);
        fx.cache(0);
        fx.cache(1);
        let user = held.then(|| fx.map.find(1).unwrap().unwrap());
        let fault = spawn_with(&(fx.map.clone(), table.clone()), |(map, table)| {
            let mut got1 = false;
            map.map_pages(
                0,
                1,
                |i| table.at(i).load(Ordering::SeqCst) == 0,
                |page| {
                    let e = entry(page.frame(), PRESENT);
                    let ok = table
                        .at(page.index())
                        .compare_exchange(0, e, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok();
                    got1 |= ok && page.index() == 1;
                    ok
                },
            );
            got1
        });
        let r = fx.map.truncate(1);
        assert!(r.errors.is_empty(), "{r:?}");
        assert_eq!(
            table.at(1).load(Ordering::SeqCst),
            0,
            "an entry maps page 1 after truncate returned"
        );
        let got1 = fault.join().unwrap();
        assert_eq!(
            table.at(1).load(Ordering::SeqCst),
            0,
            "an entry for page 1 appeared after truncate returned"
        );
        drop(user);
        if got1 {
            "page1_mapped_then_zapped"
        } else {
            "page1_refused"
        }
    })
    .assert_seen(&["page1_mapped_then_zapped", "page1_refused"]);
}

#[test]
fn fault_around_vs_truncate_unheld() {
    fault_around_vs_truncate(false);
}

#[test]
fn fault_around_vs_truncate_held() {
    fault_around_vs_truncate(true);
}

/// The fault handler's side for page 0, as in `vmr`: until the entry is
/// present, refault a revoked entry (clearing it if the page is gone),
/// map an empty one, and load after `WouldBlock`. Returns what it did.
fn fault_page0(map: &PageMap, table: &Table) -> &'static str {
    let e = table.at(0);
    let mut how = "present";
    loop {
        let old = e.load(Ordering::SeqCst);
        if old & PRESENT != 0 {
            return how;
        }
        match frame_of(old) {
            Some(frame) => {
                let r = map.refault(0, frame, |_page| {
                    // Present again, dirty bit kept.
                    e.compare_exchange(old, old | PRESENT, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                });
                match r {
                    Ok(Some(true)) => how = "refaulted",
                    Ok(Some(false)) => {}
                    Ok(None) => {
                        how = "gone";
                        let _ = e.compare_exchange(old, 0, Ordering::SeqCst, Ordering::SeqCst);
                    }
                    Err(err) => panic!("refault: {err}"),
                }
            }
            None => {
                let r = map.map_page(0, |page| {
                    e.compare_exchange(
                        0,
                        entry(page.frame(), PRESENT),
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    )
                });
                match r {
                    Ok(_) => {}
                    Err(Error::WouldBlock { .. }) => drop(map.load(0).unwrap()),
                    Err(err) => panic!("map_page: {err}"),
                }
                if how == "present" {
                    how = "mapped";
                }
            }
        }
    }
}

#[test]
fn refault_vs_yank() {
    explore(Bound::Env, || {
        let (fx, table) = mapped(3);
        fx.store_page(0, bytes::OLD);
        let frame = {
            // A CPU wrote through a dirty entry: the page itself is clean.
            let page = fx.map.load(0).unwrap();
            page.write(0, &[bytes::SECOND; 8]).unwrap();
            page.clear_dirty();
            page.frame()
        };
        table
            .at(0)
            .store(entry(frame, PRESENT | DIRTY), Ordering::SeqCst);
        let mut removal = fx.map.begin_remove(0..1, Batching::PerSpace);
        assert_eq!(removal.step(), Pass::Marked);
        assert_eq!(removal.step(), Pass::Revoked);
        // The entry is revoked: a CPU access faults.
        let fault = spawn_with(&(fx.map.clone(), table.clone()), |(map, table)| {
            fault_page0(&map, &table)
        });
        let report = removal.finish();
        let how = fault.join().unwrap();
        let e = table.at(0).load(Ordering::SeqCst);
        let mapped = frame_of(e).expect("the fault left its entry present");
        let page = fx.map.find(0).unwrap().expect("a mapped page stays cached");
        assert_eq!(
            page.frame(),
            mapped,
            "the entry maps frame {mapped:?}, the map caches page 0 in {:?}",
            page.frame()
        );
        assert!(!is_free(&fx.pool, mapped), "the entry maps a freed frame");
        // The write behind the dirty bit: stored, or in the mapped page,
        // dirty there or in the entry.
        let stored = fx.store.page(0).map(|b| b[..8].to_vec()) == Some(vec![bytes::SECOND; 8]);
        let kept =
            page_prefix(&page, 8) == vec![bytes::SECOND; 8] && (page.is_dirty() || e & DIRTY != 0);
        assert!(stored || kept, "write lost: {report:?}\n{}", fx.map.dump());
        let yanked = if report.removed == 1 {
            "yanked"
        } else {
            "kept"
        };
        format!("{how}_{yanked}")
    })
    .assert_seen(&["refaulted_kept", "gone_yanked"]);
}
