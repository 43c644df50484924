//! Reclaim: [`free_unused`](PageMap::free_unused), and the steps every
//! remover shares with it: taking back a REMOVAL mark, the remover's
//! write-back hold that keeps the mark, and the final yank under the writer
//! lock.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::error::Error;
use crate::frame::{flags, FrameId};
use crate::mapper::Mapper;
use crate::slot::{self, Refused, Slot};
use crate::sync::{epoch, Ordering};

use super::{PageMap, Wrote};

/// The most pages a remover takes in one round of its passes (Linux's
/// `mmu_gather` batches about as many): a removal, free_unused, invalidate
/// or destroy of more pages runs its passes once per batch of at most this
/// many, so its scratch space is bounded: 16 bytes a page, 8 KiB.
pub const REMOVE_BATCH: usize = 512;

/// A remover's scratch space, kept in the page map under the remover lock
/// (one remover at a time) and reused by every removal: after the first
/// removals have grown them, removers do not allocate.
#[derive(Default)]
pub(crate) struct Scratch {
    /// The batch's pages: marked victims, then those still marked.
    pub(crate) pages: Vec<(u64, FrameId)>,
    /// The mappings a removal snapshots (one per mapping of the batch's
    /// range).
    pub(crate) mappers: Vec<Arc<dyn Mapper>>,
    /// A removal's victims still marked after its write-backs.
    pub(crate) marked: Vec<(u64, FrameId)>,
    /// The shootdown batch, kept between removals (empty: its pending list
    /// keeps its capacity), so that a reclaim batch of mapped pages does
    /// not allocate.
    pub(crate) batch: Option<crate::shootdown::ShootdownBatch>,
}

/// What [`PageMap::free_unused`] did.
#[derive(Debug, Default)]
pub struct FreeReport {
    /// Pages removed and their frames returned to the pool.
    pub freed: u64,
    /// Dirty pages written back before being freed.
    pub written: u64,
    /// Pages skipped because someone held a reference.
    pub referenced: u64,
    /// Pages that someone took while the removal was in progress (kept).
    pub raced: u64,
    /// Pages skipped because a mapping (VM region) covers them.
    pub mapped: u64,
    /// Write errors: those pages are kept, dirty, with their data (at most
    /// [`MAX_REPORTED_ERRORS`](crate::MAX_REPORTED_ERRORS) kept).
    pub errors: Vec<Error>,
    /// Errors beyond the first [`MAX_REPORTED_ERRORS`](crate::MAX_REPORTED_ERRORS),
    /// counted but not kept (a failing device must not make a report grow
    /// with the range: those pages stay dirty and are retried all the same).
    pub errors_dropped: u64,
}

impl PageMap {
    /// Reclaim's look at page `index` in `frame` (see
    /// [`FramePool::reclaim`](crate::FramePool::reclaim)): `Busy` unless the
    /// slot still holds that frame, up to date, unheld and unmarked, and no
    /// pinned mapping covers it; else whether it was referenced since the
    /// last look: its slot's bit, or (if mapped) an accessed bit of one of
    /// its page table entries ([`Mapper::test_and_clear_young`], Linux's
    /// `folio_referenced`). Every bit it reads it clears.
    /// `hits_told`: the policy heard of every hit already (exact LRU), so
    /// the slot's bit is cleared but does not count.
    pub(crate) fn reclaim_check(
        &self,
        index: u64,
        frame: FrameId,
        hits_told: bool,
    ) -> (crate::frame::Check, bool) {
        use crate::frame::Check;
        let guard = epoch::pin();
        let Some(slot) = self.tree.lookup(index, &guard) else {
            return (Check::Busy, true);
        };
        let w = slot.load();
        if w.frame() != Some(frame) || !w.is_present() || w.is_loading() || w.is_removal() {
            // Being inserted, loaded, removed or replaced: in flight.
            return (Check::Busy, true);
        }
        if w.refs() != 0 {
            return (Check::Busy, false);
        }
        let Some((_, hit)) = slot.test_and_clear_accessed(frame) else {
            return (Check::Busy, true);
        };
        let mut referenced = hit && !hits_told;
        let rmap = self.rmap.read();
        if rmap.len() > 0 {
            let mut pinned = false;
            rmap.for_each_overlapping(index, index, &mut |_, m| {
                pinned |= m.is_pinned();
                // Every mapping's bit is cleared, as folio_referenced does.
                referenced |= m.test_and_clear_young(index, frame);
                true
            });
            if pinned {
                return (Check::Busy, false);
            }
        }
        let c = if referenced {
            Check::Referenced
        } else {
            Check::Unreferenced
        };
        (c, false)
    }

    /// Drops every unreferenced page: clean ones at once, dirty ones after
    /// writing them back. Referenced pages are skipped; a page someone takes
    /// during the call is kept; a write error keeps the page, dirty, and is
    /// reported. Removers on one map are serialised: this waits for another.
    ///
    /// Pages covered by a mapping (see [`add_mapping`](Self::add_mapping))
    /// are skipped, faulted in or not: they may have page table entries.
    /// Removing those is the job of the multi-pass removal
    /// ([`remove`](Self::remove)), which unmaps them first: a kernel short
    /// of frames whose files are mapped whole reclaims with it.
    ///
    /// Works in batches of at most [`REMOVE_BATCH`] pages, with the remover's
    /// reused scratch space.
    pub fn free_unused(&self) -> FreeReport {
        let mut scratch = self.remover.lock();
        let mut report = FreeReport::default();
        let mut from = 0;
        loop {
            let resume = self.free_unused_batch(from, &mut scratch.pages, &mut report);
            match resume {
                Some(next) => from = next,
                None => return report,
            }
        }
    }

    /// One batch of [`free_unused`](Self::free_unused) from page `from` on:
    /// at most [`REMOVE_BATCH`] pages. Returns where the next batch starts.
    fn free_unused_batch(
        &self,
        from: u64,
        marked: &mut Vec<(u64, FrameId)>,
        report: &mut FreeReport,
    ) -> Option<u64> {
        marked.clear();
        // Pass 1: mark the unreferenced pages REMOVAL.
        let resume = {
            let guard = epoch::pin();
            self.walk_present(from, u64::MAX, &guard, &mut |index, slot| {
                match slot.update(slot::mark_removal) {
                    Ok((_, w)) => marked.push((index, w.present_frame())),
                    Err(Refused::Busy) => report.referenced += 1,
                    Err(_) => {}
                }
                marked.len() < REMOVE_BATCH
            })
        };
        // Mapped pages stay (Akaros, 2018: put back what a VMR covers). The
        // check comes after the mark: a mapping added later can only reach
        // the page through a lookup, which clears REMOVAL, so the yank fails.
        {
            let rmap = self.rmap.read();
            if rmap.len() > 0 {
                marked.retain(|&(index, frame)| {
                    if !rmap.covers(index) {
                        return true;
                    }
                    self.unmark(index, frame);
                    report.mapped += 1;
                    false
                });
            }
        }
        // Pass 2: write back the dirty ones, no map lock held.
        marked.retain(|&(index, frame)| {
            if self.pool.flags(frame) & flags::DIRTY == 0 {
                return true;
            }
            match self.write_marked(index, frame) {
                Ok(Some(wrote)) => {
                    report.written += u64::from(wrote == Wrote::Written);
                    true
                }
                Ok(None) => {
                    report.raced += 1;
                    false
                }
                Err(e) => {
                    super::writeback::record(&mut report.errors, &mut report.errors_dropped, e);
                    false
                }
            }
        });
        // Pass 3: yank what is still marked; free frames after the lock.
        self.yank_marked(marked, false, &mut report.raced, &mut 0);
        for &(_, frame) in marked.iter() {
            self.pool.free(frame);
            report.freed += 1;
        }
        marked.clear();
        resume
    }

    /// Calls `f` on every present page of `[first, last]`, in order, until
    /// it returns false. Returns the page after the last one visited if `f`
    /// stopped the walk and pages of the range may remain, else `None`.
    pub(crate) fn walk_present<'g>(
        &self,
        first: u64,
        last: u64,
        guard: &'g epoch::Guard,
        f: &mut dyn FnMut(u64, &'g Slot) -> bool,
    ) -> Option<u64> {
        let mut from = first;
        while let Some((index, slot)) = self.tree.next_present(from, guard) {
            if index > last {
                return None;
            }
            let go_on = f(index, slot);
            let next = index.checked_add(1).filter(|&n| n <= last)?;
            if !go_on {
                return Some(next);
            }
            from = next;
        }
        None
    }

    /// Takes back our REMOVAL mark (if a holder has not already cleared it).
    pub(crate) fn unmark(&self, index: u64, frame: FrameId) {
        let guard = epoch::pin();
        if let Some(slot) = self.tree.lookup(index, &guard) {
            let _ = slot.update(|w| {
                if w.frame() == Some(frame) && w.is_removal() {
                    Ok(slot::unmark_removal(w))
                } else {
                    Err(Refused::Busy)
                }
            });
        }
    }

    /// Writes back a page marked for removal, keeping the mark.
    /// `Ok(Some(wrote))`: still marked (`wrote`: what this call did: a
    /// page may have been cleaned meanwhile); `Ok(None)`: someone took it.
    ///
    /// The remover holds the page for the write with a count that leaves
    /// REMOVAL set ([`slot::get_marked`]), so any other lookup meanwhile
    /// still clears it, even one that lets go before we do. (It used to take
    /// an ordinary count and re-mark the page if it was the sole holder at
    /// the end; a fault that took the page, mapped it and let go during the
    /// write then went unseen, and the yank freed a mapped frame. The soak
    /// test found it.)
    pub(crate) fn write_marked(&self, index: u64, frame: FrameId) -> Result<Option<Wrote>, Error> {
        let Some(page) = self.get(index, |w| {
            if w.frame() != Some(frame) {
                return Err(Refused::Busy);
            }
            slot::get_marked(w)
        })?
        else {
            return Ok(None);
        };
        let wrote = self.write_one(&page);
        let slot = page.slot;
        core::mem::forget(page); // the put is ours, to see the mark after it
        let after = slot.put();
        let still_marked = after.is_removal();
        match wrote {
            Ok(wrote) if still_marked => Ok(Some(wrote)),
            Ok(_) => Ok(None),
            Err(e) => {
                // Kept, dirty: take the mark back.
                self.unmark(index, frame);
                Err(e)
            }
        }
    }

    /// The final pass: yanks every page still marked (nobody took it since),
    /// under the writer lock, keeping in `marked` only the pages yanked,
    /// whose frames the caller frees (after the lock). `discard`: a dirty
    /// page goes anyway, counted in `discarded`.
    pub(crate) fn yank_marked(
        &self,
        marked: &mut Vec<(u64, FrameId)>,
        discard: bool,
        raced: &mut u64,
        discarded: &mut u64,
    ) {
        let g = self.tree.lock();
        let guard = epoch::pin();
        marked.retain(|&(index, frame)| {
            let Some(slot) = self.tree.lookup(index, &guard) else {
                return false;
            };
            let won = slot.update(|w| {
                if w.frame() != Some(frame) {
                    return Err(Refused::Absent);
                }
                slot::yank(w)
            });
            if won.is_err() {
                *raced += 1;
                return false;
            }
            // Yanked: nobody can reach the page any more, so its flags are ours.
            if self.pool.flags(frame) & flags::DIRTY != 0 {
                assert!(discard, "yanked dirty page {index}: its data would be lost");
                self.pool.clear_flags(frame, flags::DIRTY);
                *discarded += 1;
            }
            let f = self.tree.remove_yanked(index, self.may_unlink(), &g);
            debug_assert_eq!(f, Some(frame));
            self.nr_pages.fetch_sub(1, Ordering::Relaxed);
            true
        });
    }
}
