//! The mechanics of changing a range of an address space (munmap, mprotect,
//! madvise, teardown) and of fork's write protection: the regions are split
//! (see [`Regions::split_range`]), their page table entries changed in one
//! lazy MMU section, the space shot down once, dirty bits settled into the
//! page cache and private frames freed after the shootdown, and only then
//! the old regions taken out of the reverse map.
//!
//! Layer: above `regions`, `region`, `lazy` and `mm`; below `space`, whose
//! entry points call it holding the address-space write lock.

use std::sync::Arc;

use pagemap::{FrameId, PageRef, PrivateFrame, ShootdownBatch, PAGE_SIZE};

use crate::lazy::{self, PteOp};
use crate::mm::MmCore;
use crate::pte;
use crate::region::{Prot, Vmr};
use crate::regions::{NewAttrs, Regions};
use crate::sync::RwLockWriteGuard;

const PAGE: u64 = PAGE_SIZE as u64;

/// A page table entry taken away by an unmap, to settle after the shootdown.
struct Unmapped {
    vmr: Arc<Vmr>,
    tag: usize,
    vpn: u64,
    old: u64,
}

/// A shared page held while an unmap takes its entry's dirty bit: without
/// the reference a remover could free the page before the bit reaches it.
struct Hold<'v> {
    tag: usize,
    vpn: u64,
    page: PageRef<'v>,
}

/// Replaces the regions overlapping `[start, end)` of the space `core`:
/// the parts outside keep their attributes, the part inside gets `f`'s
/// (prot, advice) or goes (`None`). Order: new pieces into the reverse map;
/// PTEs changed; one shootdown; dirty bits harvested, private frames freed;
/// old regions out of the reverse map. No page is uncovered at any point.
pub(crate) fn rework(
    core: &Arc<MmCore>,
    regions: &mut RwLockWriteGuard<'_, Regions>,
    start: u64,
    end: u64,
    f: NewAttrs<'_>,
    unmap: bool,
) {
    // (old region, first and last address changed, its new prot)
    let olds = regions.split_range(start, end, f);
    if olds.is_empty() {
        return;
    }
    // PTE changes are batched in a lazy MMU section and applied at its
    // end (or at the caller's flush, if this one is nested). Pages whose
    // dirty bit we may take are held until it is in the page cache.
    let mut holds: Vec<Hold<'_>> = Vec::new();
    // Entries we clear stay in CPUs' TLBs until our flush below: say so
    // to truncate and removal, which must not free or cut the pages
    // behind them without their own shootdown of this space.
    core.begin_flush_pending();
    lazy::lazy_mmu_mode_enable();
    for (tag, (old, lo, hi, prot)) in olds.iter().enumerate() {
        take_ptes(core, &old.vmr, *lo, *hi, unmap, *prot, tag, &mut holds);
    }
    lazy::lazy_mmu_mode_disable();
    let taken: Vec<Unmapped> = lazy::take_applied()
        .into_iter()
        .filter(|&(_, _, old)| old != 0)
        .map(|(tag, vpn, old)| Unmapped {
            vmr: olds[tag].0.vmr.clone(),
            tag,
            vpn,
            old,
        })
        .collect();
    // One shootdown for this space (a whole-space flush above the
    // batch's ceiling); the private frames taken go back to the pool only
    // after it has completed.
    let mut batch = ShootdownBatch::new();
    if !taken.is_empty() {
        batch.add(core.clone(), start / PAGE, (end - 1) / PAGE);
    }
    if unmap {
        let pool = core.machine.pool();
        for t in &taken {
            if let Some(loc) = pte::swap_location(t.old) {
                // A swap entry: its count on the location goes (the last
                // frees the location). No TLB holds a swap entry.
                let swap = core.machine.swap().expect("a swap entry means swap");
                swap.free_entry(pagemap::swap::Location::new(loc));
            }
        }
        for t in taken.iter().filter(|t| t.old & pte::PRIVATE != 0) {
            let frame = FrameId::new(pte::frame(t.old)).expect("private PTE has a frame");
            // SAFETY: a private entry owns its frame (`into_raw` at the
            // copy-on-write fault or fork), and our swap to 0 took this
            // entry out of the table: a concurrent zap that got there
            // first returned it instead, and we saw 0 (filtered above).
            // So this is the only `from_raw`. (mprotect's updates keep
            // the frame in the entry, so only munmap frees here; the
            // entry-still-names-it test it replaces double-freed a copy
            // that a truncate zapped between mprotect(NONE) and it.)
            batch.defer_free(unsafe { PrivateFrame::from_raw(pool, frame) });
        }
    }
    batch.flush();
    core.end_flush_pending();
    settle(taken, &holds);
    drop(holds);
    for (old, ..) in olds {
        old.vmr.file.remove_mapping(old.id);
    }
}

/// Queues the PTE changes of `[lo, hi)` of `v` (clear them for `unmap`,
/// or remove write, and presence for NONE, as `prot` asks) in the
/// caller's lazy MMU section; `tag` names `v` in the caller's list. A
/// shared page whose entry may carry a dirty bit is held in `holds`.
#[allow(clippy::too_many_arguments)]
fn take_ptes<'v>(
    core: &Arc<MmCore>,
    v: &'v Vmr,
    lo: u64,
    hi: u64,
    unmap: bool,
    prot: Option<Prot>,
    tag: usize,
    holds: &mut Vec<Hold<'v>>,
) {
    let (keep_write, keep_read) = match prot {
        Some(p) if !unmap => (p.contains(Prot::WRITE), p != Prot::NONE),
        _ => (false, false),
    };
    if !unmap && keep_write && keep_read {
        return; // adding rights: faults upgrade the entries
    }
    let op = if unmap {
        PteOp::Clear
    } else if !keep_read {
        PteOp::Update(prot_none, 0)
    } else {
        PteOp::Update(write_protect, 0)
    };
    core.pt.for_each(lo / PAGE, (hi - 1) / PAGE, &mut |vpn, p| {
        let old = p.load();
        // The AS write lock keeps faults out, so an entry neither
        // writable nor dirty now cannot become dirty before our op.
        if v.is_shared() && old & pte::PRIVATE == 0 && old & (pte::WRITABLE | pte::DIRTY) != 0 {
            let index = v.index_of(vpn * PAGE);
            let frame = FrameId::new(pte::frame(old)).expect("shared PTE has a frame");
            // (None: a remover reaped the entry meanwhile.)
            if let Some(page) = v.file.find_frame(index, frame) {
                holds.push(Hold { tag, vpn, page });
            }
        }
        lazy::queue(core, vpn, op, tag);
    });
}

/// After the shootdown: dirty bits of shared pages go to the page cache,
/// through the references `take_ptes` took (in `(tag, vpn)` order).
fn settle(taken: Vec<Unmapped>, holds: &[Hold<'_>]) {
    for t in taken {
        if t.old & pte::PRIVATE != 0 || t.old & pte::DIRTY == 0 {
            continue; // private: freed by the shootdown batch if unmapped
        }
        let at = holds.binary_search_by_key(&(t.tag, t.vpn), |h| (h.tag, h.vpn));
        match at.ok().map(|i| &holds[i].page) {
            Some(page) if page.frame().get() == pte::frame(t.old) => page.mark_dirty(),
            _ => panic!(
                "dirty bit of page {} taken without holding the page",
                t.vmr.index_of(t.vpn * PAGE)
            ),
        }
    }
}

/// Fork's first step: every writable private entry becomes read-only, in
/// one lazy section, then one shootdown of this space if any changed.
pub(crate) fn write_protect_private(core: &Arc<MmCore>, regions: &Regions) {
    lazy::lazy_mmu_mode_enable();
    for r in regions.map.values() {
        let v = &r.vmr;
        if v.is_shared() {
            continue;
        }
        core.pt
            .for_each(v.base / PAGE, (v.end - 1) / PAGE, &mut |vpn, p| {
                if p.load() & pte::PRIVATE != 0 {
                    lazy::queue(core, vpn, PteOp::Update(protect_private, 0), 0);
                }
            });
    }
    lazy::lazy_mmu_mode_disable();
    let changed = lazy::take_applied();
    let lo = changed.iter().map(|a| a.1).min();
    let hi = changed.iter().map(|a| a.1).max();
    if let (Some(lo), Some(hi)) = (lo, hi) {
        core.shootdown(lo, hi);
    }
}

/// mprotect(NONE) of one PTE: a private frame stays recorded (its data is
/// the only copy) but not present; a shared page is simply unmapped.
fn prot_none(old: u64, _: u64) -> Option<u64> {
    if old == 0 || old & pte::SWAP != 0 {
        return None; // a swap entry is not present already, and the data's
    }
    // A private entry keeps its dirty bit: a swap-out reads it (a write
    // after MADV_FREE lives there: break13 lost it when this cleared it).
    Some(if old & pte::PRIVATE != 0 {
        old & !(pte::PRESENT | pte::WRITABLE)
    } else {
        0
    })
}

/// fork: a writable private copy becomes read-only (its dirty bit means
/// nothing to the page cache: the frame is ours alone).
fn protect_private(old: u64, _: u64) -> Option<u64> {
    (old & pte::PRIVATE != 0 && old & pte::WRITABLE != 0).then_some(old & !pte::WRITABLE)
}

/// mprotect without WRITE of one PTE: write and dirty go (the dirty bit is
/// settled into the page cache after the shootdown).
fn write_protect(old: u64, _: u64) -> Option<u64> {
    // A private entry keeps its dirty bit (see `prot_none`); a shared one's
    // is settled into the page cache after the shootdown.
    let clear = if old & pte::PRIVATE != 0 {
        pte::WRITABLE
    } else {
        pte::WRITABLE | pte::DIRTY
    };
    (old & pte::WRITABLE != 0).then_some(old & !clear)
}
