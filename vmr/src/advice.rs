//! The mechanics of madvise's actions and of mlock on a range of an address
//! space: `MADV_DONTNEED` (drop private pages now), `MADV_FREE` (let reclaim
//! drop them unwritten unless written again), the LOCKED flag of regions and
//! the MLOCKED bits of their private entries.
//!
//! Every function here runs under the address-space write lock (no fault of
//! the space runs meanwhile, so no entry of it is LOCKed by a fault), and
//! changes entries with one CAS each (CPUs set A/D bits concurrently; a
//! swap-out's walk changes private entries without the lock).
//!
//! Layer: beside `rework` (above `lazy`, `mm`, `pte`, `region`,
//! `regions`); below `paging`, whose entry points call it.

use std::sync::Arc;

use pagemap::swap::Location;
use pagemap::{FrameId, PrivateFrame, ShootdownBatch, PAGE_SIZE};

use crate::lazy::{self, PteOp};
use crate::mm::MmCore;
use crate::pte;
use crate::region::MapFlags;
use crate::regions::Regions;
use crate::sync::RwLockWriteGuard;

const PAGE: u64 = PAGE_SIZE as u64;

/// The private regions' parts of `[start, end)`: `(lo, hi, anonymous,
/// locked)` each.
fn private_parts(regions: &Regions, start: u64, end: u64) -> Vec<(u64, u64, bool, bool)> {
    regions
        .overlapping(start, end)
        .into_iter()
        .map(|b| &regions.map[&b].vmr)
        .filter(|v| !v.is_shared())
        .map(|v| {
            (
                start.max(v.base),
                end.min(v.end),
                v.is_anonymous(),
                v.flags.contains(MapFlags::LOCKED),
            )
        })
        .collect()
}

/// The first address of `[start, end)` in a locked region, if any.
pub(crate) fn first_locked(regions: &Regions, start: u64, end: u64) -> Option<u64> {
    regions
        .overlapping(start, end)
        .into_iter()
        .map(|b| &regions.map[&b].vmr)
        .find(|v| v.flags.contains(MapFlags::LOCKED))
        .map(|v| start.max(v.base))
}

/// The first address of `[start, end)` in a region that is not anonymous.
pub(crate) fn first_not_anonymous(regions: &Regions, start: u64, end: u64) -> Option<u64> {
    regions
        .overlapping(start, end)
        .into_iter()
        .map(|b| &regions.map[&b].vmr)
        .find(|v| !v.is_anonymous())
        .map(|v| start.max(v.base))
}

/// `MADV_DONTNEED` of `[start, end)`: every entry of its private regions
/// goes (private frames freed after one shootdown, swap entries' counts
/// dropped, page-cache pages of private file mappings unmapped: they are
/// never dirty through a private entry). The next touch zero-fills an
/// anonymous page or maps the file's page again. Shared regions are left
/// as they are (their pages are the file's: dropping the entries would
/// change nothing a reader can see). Returns the entries dropped.
pub(crate) fn dontneed(core: &Arc<MmCore>, regions: &Regions, start: u64, end: u64) -> usize {
    lazy::lazy_mmu_mode_enable();
    for (lo, hi, _, _) in private_parts(regions, start, end) {
        core.pt.for_each(lo / PAGE, (hi - 1) / PAGE, &mut |vpn, _| {
            lazy::queue(core, vpn, PteOp::Clear, 0);
        });
    }
    lazy::lazy_mmu_mode_disable();
    let taken: Vec<u64> = lazy::take_applied()
        .into_iter()
        .map(|(_, _, old)| old)
        .filter(|&old| old != 0)
        .collect();
    if taken.is_empty() {
        return 0;
    }
    let mut batch = ShootdownBatch::new();
    batch.add(core.clone(), start / PAGE, (end - 1) / PAGE);
    let pool = core.machine.pool();
    for &old in &taken {
        if let Some(loc) = pte::swap_location(old) {
            let swap = core.machine.swap().expect("a swap entry means swap");
            swap.free_entry(Location::new(loc));
        } else if old & pte::PRIVATE != 0 {
            let frame = FrameId::new(pte::frame(old)).expect("private PTE has a frame");
            // SAFETY: the entry held this reference and our swap to 0 took
            // it out of the table (faults are held off by the write lock, a
            // swap-out's CAS on it failed or came first and left a swap
            // entry instead): the only `from_raw` of it.
            batch.defer_free(unsafe { PrivateFrame::from_raw(pool, frame) });
        }
    }
    batch.flush();
    taken.len()
}

/// `MADV_FREE` of `[start, end)` (anonymous regions only, checked by the
/// caller): each private frame's entry loses its dirty bit, then (after one
/// shootdown, so no CPU holds a dirty translation) the frame is marked
/// lazily freeable if this entry is its only user
/// ([`pagemap::swap::Swap::lazy_free`]). Each entry is locked (LOCK) from
/// its change to its marking, so a swap-out cannot free the frame
/// meanwhile. Returns the frames marked.
pub(crate) fn lazy_free(core: &Arc<MmCore>, regions: &Regions, start: u64, end: u64) -> usize {
    let Some(swap) = core.machine.swap() else {
        // Without swap a clean page has nowhere to wait: free it now (a
        // lazily freed page may read zeroes at any time: now is one).
        return dontneed(core, regions, start, end);
    };
    let mut locked = Vec::new();
    for (lo, hi, _, _) in private_parts(regions, start, end) {
        core.pt.for_each(lo / PAGE, (hi - 1) / PAGE, &mut |vpn, p| {
            let Ok(old) = p.update(|o| {
                (o & pte::PRIVATE != 0 && o & pte::LOCK == 0)
                    .then_some((o & !pte::DIRTY) | pte::LOCK)
            }) else {
                return;
            };
            locked.push((vpn, old));
        });
    }
    if locked.is_empty() {
        return 0;
    }
    core.shootdown(start / PAGE, (end - 1) / PAGE);
    let mut marked = 0;
    for &(vpn, old) in &locked {
        let frame = FrameId::new(pte::frame(old)).expect("private PTE has a frame");
        marked += usize::from(swap.lazy_free(frame));
        let p = core.pt.get(vpn).expect("locked above");
        p.update(|o| Some(o & !pte::LOCK))
            .expect("update always applies");
    }
    marked
}

/// Sets (`on`) or clears the MLOCKED bit of every private frame's entry
/// in `[start, end)` (mlock, munlock). Returns the pages of the range whose
/// entry is not a present, MLOCKED private frame afterwards (`on`: the
/// caller faults them in again: a swap-out may have taken one meanwhile).
pub(crate) fn set_mlocked(core: &MmCore, start: u64, end: u64, on: bool) -> usize {
    let mut missing = 0;
    for vpn in start / PAGE..=(end - 1) / PAGE {
        let Some(p) = core.pt.get(vpn) else {
            missing += 1;
            continue;
        };
        let _ = p.update(|o| {
            if o & pte::PRIVATE == 0 || o & pte::LOCK != 0 {
                return None;
            }
            let new = if on {
                o | pte::MLOCKED
            } else {
                o & !pte::MLOCKED
            };
            (new != o).then_some(new)
        });
        let now = p.load();
        if on && (now & pte::PRIVATE == 0 || now & pte::MLOCKED == 0) {
            missing += 1;
        }
    }
    missing
}

/// Gives the regions of `[start, end)` (all mapped: checked by the caller)
/// the LOCKED flag (`on`) or takes it away, splitting them at the ends; no
/// entry changes (the caller marks them). New pieces enter the file's
/// reverse map before the old regions leave it, as in `rework`.
pub(crate) fn set_locked_flag(
    regions: &mut RwLockWriteGuard<'_, Regions>,
    start: u64,
    end: u64,
    on: bool,
) {
    let olds = regions.split_range(start, end, &|v| {
        let flags = if on {
            v.flags | MapFlags::LOCKED
        } else {
            MapFlags(v.flags.bits() & !MapFlags::LOCKED.bits())
        };
        Some((v.prot, v.advice, flags))
    });
    for (old, ..) in olds {
        old.vmr.file.remove_mapping(old.id);
    }
}
