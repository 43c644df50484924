//! Reclaim: [`free_unused`](PageMap::free_unused), and the steps every
//! remover shares with it: taking back a REMOVAL mark, the remover's
//! write-back hold that keeps the mark, and the final yank under the writer
//! lock.

use crate::error::Error;
use crate::frame::{flags, FrameId};
use crate::slot::{self, Refused};
use crate::sync::{epoch, Ordering};
use alloc::vec::Vec;

use super::{PageMap, Wrote};

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
    /// Write errors: those pages are kept, dirty, with their data.
    pub errors: Vec<Error>,
}

impl PageMap {
    /// Drops every unreferenced page: clean ones at once, dirty ones after
    /// writing them back. Referenced pages are skipped; a page someone takes
    /// during the call is kept; a write error keeps the page, dirty, and is
    /// reported. Removers on one map are serialised: this waits for another.
    ///
    /// Pages covered by a mapping (see [`add_mapping`](Self::add_mapping))
    /// are skipped: they may have page table entries. Removing those is the
    /// job of the multi-pass removal, which unmaps them first.
    pub fn free_unused(&self) -> FreeReport {
        let _remover = self.remover.lock();
        let mut report = FreeReport::default();
        // Pass 1: mark every unreferenced page REMOVAL.
        let mut marked: Vec<(u64, FrameId)> = Vec::new();
        {
            let guard = epoch::pin();
            let mut from = 0;
            while let Some((index, slot)) = self.tree.next_present(from, &guard) {
                match slot.update(slot::mark_removal) {
                    Ok((_, w)) => marked.push((index, w.present_frame())),
                    Err(Refused::Busy) => report.referenced += 1,
                    Err(_) => {}
                }
                match index.checked_add(1) {
                    Some(n) => from = n,
                    None => break,
                }
            }
        }
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
                    report.errors.push(e);
                    false
                }
            }
        });
        // Pass 3: yank what is still marked; free frames after the lock.
        let freed = self.yank_marked(marked, false, &mut report.raced, &mut 0);
        for frame in freed {
            self.pool.free(frame);
            report.freed += 1;
        }
        report
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
    /// under the writer lock. Returns the frames to free (after the lock).
    /// `discard`: a dirty page goes anyway, counted in `discarded`.
    pub(crate) fn yank_marked(
        &self,
        marked: Vec<(u64, FrameId)>,
        discard: bool,
        raced: &mut u64,
        discarded: &mut u64,
    ) -> Vec<FrameId> {
        let mut freed = Vec::with_capacity(marked.len());
        let g = self.tree.lock();
        let guard = epoch::pin();
        for (index, frame) in marked {
            let Some(slot) = self.tree.lookup(index, &guard) else {
                continue;
            };
            let won = slot.update(|w| {
                if w.frame() != Some(frame) {
                    return Err(Refused::Absent);
                }
                slot::yank(w)
            });
            if won.is_err() {
                *raced += 1;
                continue;
            }
            // Yanked: nobody can reach the page any more, so its flags are ours.
            if self.pool.flags(frame) & flags::DIRTY != 0 {
                assert!(discard, "yanked dirty page {index}: its data would be lost");
                self.pool.clear_flags(frame, flags::DIRTY);
                *discarded += 1;
            }
            let f = self.tree.remove_yanked(index, &g);
            debug_assert_eq!(f, Some(frame));
            self.nr_pages.fetch_sub(1, Ordering::Relaxed);
            freed.push(frame);
        }
        freed
    }
}
