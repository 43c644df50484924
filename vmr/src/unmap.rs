//! A VM region's side of the page map's removal, writeback and truncate
//! protocols ([`pagemap::Mapper`]): page table entries made not present,
//! reaped, cleaned or zapped, in lazy MMU sections, with the address space
//! added to the caller's shootdown batch.
//!
//! Every entry change is one CAS that re-checks the frame, so a concurrent
//! fault, munmap or copy-on-write fault wins or loses cleanly; an entry with
//! `pte::LOCK` belongs to a copy-on-write fault in flight and is left to it.

use pagemap::{FrameId, Harvest, Held, Mapper, ShootdownBatch, Victims, PAGE_SIZE};

use crate::lazy::{self, PteOp};
use crate::pte;
use crate::region::{MapFlags, Prot, Vmr};

const PAGE: u64 = PAGE_SIZE as u64;

/// Pass 2: a present shared entry of the victim frame `frame` loses PRESENT
/// (frame, dirty and accessed bits stay: a fault rebuilds the entry).
fn revoke_pte(old: u64, frame: u64) -> Option<u64> {
    let ours = u64::from(pte::frame(old)) == frame
        && old & pte::PRESENT != 0
        && old & (pte::LOCK | pte::PRIVATE) == 0;
    ours.then_some(old & !pte::PRESENT)
}

/// Pass 4: a not-present entry of the victim frame goes (a fault that made
/// it present again holds the page; a locked one is a copy-on-write's).
fn reap_pte(old: u64, frame: u64) -> Option<u64> {
    let ours = u64::from(pte::frame(old)) == frame
        && old & (pte::PRESENT | pte::LOCK | pte::PRIVATE | pte::SWAP) == 0;
    ours.then_some(0)
}

/// Writeback: an entry of `frame` that allows writing or is dirty becomes
/// read-only and clean.
fn clean_pte(old: u64, frame: u64) -> Option<u64> {
    let ours = u64::from(pte::frame(old)) == frame
        && old & (pte::WRITABLE | pte::DIRTY) != 0
        && old & (pte::LOCK | pte::PRIVATE) == 0;
    ours.then_some(old & !(pte::WRITABLE | pte::DIRTY))
}

/// Truncate: any entry goes, private copies included. A copy-on-write in
/// flight (LOCK) is left to it: it runs in `map_page`'s callback, which
/// truncate waits for before its second zap, which then finds the copy.
fn zap_pte(old: u64, _: u64) -> Option<u64> {
    (old != 0 && old & pte::LOCK == 0).then_some(0)
}

/// Hole punch: the file's page goes, a private copy stays (it is the
/// process's data now, not the file's), paged out (a swap entry) or not. A copy-on-write in flight (LOCK) is
/// left to it, as for truncate: its result is a private copy, kept too.
fn zap_shared_pte(old: u64, _: u64) -> Option<u64> {
    (old != 0 && old & (pte::LOCK | pte::PRIVATE | pte::SWAP) == 0).then_some(0)
}

impl Vmr {
    /// Runs `queue` in a lazy MMU section and returns what it applied:
    /// `(tag, vpn, old entry)`.
    fn batched(&self, queue: impl FnOnce()) -> Vec<(usize, u64, u64)> {
        lazy::lazy_mmu_mode_enable();
        queue();
        lazy::lazy_mmu_mode_disable();
        lazy::take_applied()
    }

    /// Adds this space to `batch` over the pages `applied` changed, or over
    /// `span` (virtual pages) if it changed none but an unmapper of the space
    /// has cleared entries and not yet shot them down: a CPU may still cache
    /// one of them, and the caller is about to free or cut the page behind
    /// it (the entries were read first; see `MmCore::begin_flush_pending`).
    fn add_to_batch(
        &self,
        applied: &[(usize, u64, u64)],
        span: (u64, u64),
        batch: &mut ShootdownBatch,
    ) {
        let lo = applied.iter().map(|a| a.1).min();
        let hi = applied.iter().map(|a| a.1).max();
        if let (Some(lo), Some(hi)) = (lo, hi) {
            batch.add(self.mm.clone(), lo, hi);
        } else if self.mm.flush_pending() {
            batch.add(self.mm.clone(), span.0, span.1);
        }
    }

    /// Virtual pages showing file pages `[first, last]` (within the region).
    fn vpns(&self, first: u64, last: u64) -> (u64, u64) {
        (self.va_of(first) / PAGE, self.va_of(last) / PAGE)
    }

    /// Queues `f(frame)` for every victim of ours whose entry maps its frame.
    fn queue_victims(&self, victims: &Victims, f: fn(u64, u64) -> Option<u64>) {
        let (first, last) = self.file_pages();
        for &(index, frame) in victims.within(first, last) {
            let vpn = self.va_of(index) / PAGE;
            let Some(p) = self.mm.pt.get(vpn) else {
                continue;
            };
            if pte::frame(p.load()) == frame.get() {
                lazy::queue(&self.mm, vpn, PteOp::Update(f, u64::from(frame.get())), 0);
            }
        }
    }
}

impl Mapper for Vmr {
    fn file_pages(&self) -> (u64, u64) {
        (self.pgoff, self.pgoff + (self.pages() - 1))
    }

    fn is_pinned(&self) -> bool {
        self.flags.contains(MapFlags::LOCKED)
    }

    fn revoke(&self, victims: &Victims, batch: &mut ShootdownBatch) {
        let applied = self.batched(|| self.queue_victims(victims, revoke_pte));
        let (first, last) = self.file_pages();
        let mine = victims.within(first, last);
        if let (Some(a), Some(b)) = (mine.first(), mine.last()) {
            self.add_to_batch(&applied, self.vpns(a.0, b.0), batch);
        }
    }

    fn test_and_clear_young(&self, index: u64, frame: FrameId) -> bool {
        let (first, last) = self.file_pages();
        if index < first || index > last {
            return false;
        }
        let Some(p) = self.mm.pt.get(self.va_of(index) / PAGE) else {
            return false;
        };
        loop {
            let old = p.load();
            if pte::frame(old) != frame.get() || old & pte::ACCESSED == 0 {
                return false;
            }
            if old & pte::LOCK != 0 {
                // A copy-on-write in progress: an access, and not ours to change.
                return true;
            }
            // A CPU may set DIRTY meanwhile: the CAS then fails and we look
            // again (the PTE protocol's rule 3: never overwrite A/D bits).
            if p.cas(old, old & !pte::ACCESSED).is_ok() {
                return true;
            }
        }
    }

    fn reap(&self, victims: &Victims, dirty: &mut dyn FnMut(u64, FrameId)) {
        // No shootdown: these entries have been not present since pass 2,
        // and pass 3 flushed every translation made before.
        for (_, vpn, old) in self.batched(|| self.queue_victims(victims, reap_pte)) {
            if old & pte::DIRTY != 0 {
                let frame = FrameId::new(pte::frame(old)).expect("reaped PTE has a frame");
                dirty(self.index_of(vpn * PAGE), frame);
            }
        }
    }

    fn clean(&self, first: u64, last: u64, batch: &mut ShootdownBatch, harvest: &mut Harvest<'_>) {
        if !self.is_shared() || !self.prot.contains(Prot::WRITE) {
            return; // its entries are never writable
        }
        let (lo, hi) = self.vpns(first, last);
        // Hold each page whose dirty bit we may take before the update that
        // takes it (applied at the end of the lazy section), so that no
        // remover frees it in between; the dirty ones are handed over.
        let mut holds: Vec<Option<Held<'_>>> = Vec::new();
        let applied = self.batched(|| {
            self.mm.pt.for_each(lo, hi, &mut |vpn, p| {
                let v = p.load();
                if clean_pte(v, u64::from(pte::frame(v))).is_none() {
                    return;
                }
                let index = self.index_of(vpn * PAGE);
                let frame = FrameId::new(pte::frame(v)).expect("PTE has a frame");
                let Some(page) = harvest.hold(index, frame) else {
                    return; // reaped meanwhile: nothing to clean
                };
                let tag = holds.len();
                holds.push(Some(page));
                let op = PteOp::Update(clean_pte, u64::from(pte::frame(v)));
                lazy::queue(&self.mm, vpn, op, tag);
            });
        });
        for &(tag, _, old) in &applied {
            if old & pte::DIRTY != 0 {
                // Each tag is applied once (one queued op per entry).
                if let Some(page) = holds[tag].take() {
                    harvest.dirty(page);
                }
            }
        }
        self.add_to_batch(&applied, (lo, hi), batch);
    }

    fn zap(&self, first: u64, last: u64, batch: &mut ShootdownBatch) {
        let (lo, hi) = self.vpns(first, last);
        let applied = self.batched(|| {
            self.mm.pt.for_each(lo, hi, &mut |vpn, p| {
                if p.load() != 0 {
                    lazy::queue(&self.mm, vpn, PteOp::Update(zap_pte, 0), 0);
                }
            });
        });
        let pool = self.mm.machine.pool();
        for &(_, _, old) in &applied {
            if let Some(loc) = pte::swap_location(old) {
                // A paged-out private copy: its swap entry goes.
                let swap = self.mm.machine.swap().expect("a swap entry means swap");
                swap.free_entry(pagemap::swap::Location::new(loc));
            }
            if old & pte::PRIVATE != 0 {
                let frame =
                    pagemap::FrameId::new(pte::frame(old)).expect("private PTE has a frame");
                // SAFETY: a private entry owns its frame (the copy-on-write
                // fault or fork put it there with `into_raw`), and our swap
                // to 0 (zap_pte) took the entry out of the table: no other
                // path saw this old value, so this is the only `from_raw`.
                let copy = unsafe { pagemap::PrivateFrame::from_raw(pool, frame) };
                batch.defer_free(copy);
            }
        }
        self.add_to_batch(&applied, (lo, hi), batch);
    }

    fn zap_shared(&self, first: u64, last: u64, batch: &mut ShootdownBatch) {
        let (lo, hi) = self.vpns(first, last);
        let applied = self.batched(|| {
            self.mm.pt.for_each(lo, hi, &mut |vpn, p| {
                let old = p.load();
                // A private copy is skipped here and re-checked in the
                // update (zap_shared_pte), which alone decides.
                if old != 0 && old & pte::PRIVATE == 0 {
                    lazy::queue(&self.mm, vpn, PteOp::Update(zap_shared_pte, 0), 0);
                }
            });
        });
        // No private frame to free: the update never clears a private entry.
        debug_assert!(applied.iter().all(|&(_, _, old)| old & pte::PRIVATE == 0));
        self.add_to_batch(&applied, (lo, hi), batch);
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;

    #[test]
    fn entry_transitions() {
        let f = 7u32;
        let shared = pte::make(f, pte::PRESENT | pte::WRITABLE | pte::DIRTY);
        let hidden = revoke_pte(shared, 7).unwrap();
        assert_eq!(hidden & pte::PRESENT, 0);
        assert_eq!(
            hidden & pte::DIRTY,
            pte::DIRTY,
            "dirty bit kept for the reap"
        );
        assert_eq!(revoke_pte(shared, 8), None, "other frame");
        assert_eq!(revoke_pte(hidden, 7), None, "already not present");
        assert_eq!(reap_pte(hidden, 7), Some(0));
        assert_eq!(reap_pte(shared, 7), None, "a fault made it present again");
        assert_eq!(
            reap_pte(hidden | pte::LOCK, 7),
            None,
            "copy-on-write in flight"
        );
        let private = pte::make(f, pte::PRESENT | pte::WRITABLE | pte::PRIVATE);
        assert_eq!(
            revoke_pte(private, 7),
            None,
            "a private copy is not the page"
        );
        let clean = clean_pte(shared, 7).unwrap();
        assert_eq!(clean & (pte::WRITABLE | pte::DIRTY), 0);
        assert_eq!(clean & pte::PRESENT, pte::PRESENT);
        assert_eq!(clean_pte(clean, 7), None);
        assert_eq!(zap_pte(private, 0), Some(0));
        assert_eq!(zap_pte(hidden | pte::LOCK, 0), None);
        assert_eq!(zap_pte(0, 0), None);
        assert_eq!(zap_shared_pte(shared, 0), Some(0));
        assert_eq!(zap_shared_pte(hidden, 0), Some(0), "revoked: the page's");
        assert_eq!(zap_shared_pte(private, 0), None, "a punch keeps copies");
        assert_eq!(zap_shared_pte(shared | pte::LOCK, 0), None);
        assert_eq!(zap_shared_pte(0, 0), None);
        let swapped = pte::swap_entry(3);
        assert_eq!(zap_pte(swapped, 0), Some(0), "truncate drops a swap entry");
        assert_eq!(zap_shared_pte(swapped, 0), None, "a punch keeps it");
        assert_eq!(revoke_pte(swapped, 0), None);
        assert_eq!(reap_pte(swapped, 0), None);
    }
}
