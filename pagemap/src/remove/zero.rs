//! Zap and zero: the cache's half of truncate and hole punch. Every
//! mapping's entries of the range are cleared, the removal passes take the
//! pages nobody holds, the pages in use are zeroed (each once the faults in
//! flight on it have installed their entries), and the entries are cleared
//! again. Truncate's zaps take private copy-on-write copies too; a hole
//! punch's spare them ([`Mapper::zap_shared`]), and zero just the punched
//! bytes of a partial first or last page.

use crate::frame::flags;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::map::{PageMap, Scratch};
use crate::mapper::Mapper;
use crate::shootdown::ShootdownBatch;
use crate::sync::epoch;
use crate::PAGE_SIZE;

use super::passes::Policy;
use super::{Batching, RemoveReport};

impl PageMap {
    /// Clears every entry of every mapping of `[first, last]`, pinned
    /// mappings included, with one shootdown per address space: private
    /// copies too with `cows` ([`Mapper::zap`]), else only the entries of the
    /// file's pages ([`Mapper::zap_shared`]). Returns the shootdowns issued.
    /// The mappings are snapshotted into the remover's reusable `mappers`.
    fn zap_mappings(
        &self,
        mappers: &mut Vec<Arc<dyn Mapper>>,
        first: u64,
        last: u64,
        cows: bool,
    ) -> u64 {
        mappers.clear();
        self.rmap
            .read()
            .for_each_overlapping(first, last, &mut |_, m| {
                mappers.push(m.clone());
                true
            });
        if mappers.is_empty() {
            return 0;
        }
        let mut batch = ShootdownBatch::new();
        for m in mappers.iter() {
            let (mf, ml) = m.file_pages();
            let (f, l) = (first.max(mf), last.min(ml));
            if cows {
                m.zap(f, l, &mut batch);
            } else {
                m.zap_shared(f, l, &mut batch);
            }
        }
        mappers.clear();
        batch.flush().shootdowns
    }

    /// Zap, remove or zero, zap again (the remover lock held): the cache's
    /// half of truncate and hole punch. The first zap unmaps everything,
    /// private copies included ("even cows"), so that nothing maps a page
    /// about to be zeroed or freed; pages nobody holds are removed; the rest
    /// are zeroed, each after the faults in flight on it have installed
    /// their entries (see `crate::fault`); the second zap clears those
    /// entries (and any private copy a copy-on-write made from the old bytes
    /// meanwhile). Linux's `truncate_pagecache` has the same shape.
    pub(super) fn remove_or_zero_locked(
        &self,
        scratch: &mut Scratch,
        first: u64,
        last: u64,
    ) -> RemoveReport {
        self.zap_remove_zero(scratch, first, last, true)
    }

    /// The whole pages of a hole punch: as
    /// [`remove_or_zero_locked`](Self::remove_or_zero_locked) (so a write of
    /// old bytes in flight drains before its page is zeroed, and dirty pages
    /// are discarded), but both zaps spare private copy-on-write copies
    /// (Linux's punch unmaps without `even_cows`). A copy a fault makes
    /// from the old bytes between the zaps is kept too: it copied a page
    /// that was still the file's, as one made just before the punch would.
    pub(super) fn punch_locked(
        &self,
        scratch: &mut Scratch,
        first: u64,
        last: u64,
    ) -> RemoveReport {
        self.zap_remove_zero(scratch, first, last, false)
    }

    /// Zap (`cows`: private copies too), remove or zero, zap again.
    fn zap_remove_zero(
        &self,
        scratch: &mut Scratch,
        first: u64,
        last: u64,
        cows: bool,
    ) -> RemoveReport {
        let shootdowns = self.zap_mappings(&mut scratch.mappers, first, last, cows);
        let policy = Policy {
            batching: Batching::PerSpace,
            skip_pinned: false,
            discard: true,
        };
        let mut report = self.remove_locked(scratch, first, last, policy);
        report.shootdowns += shootdowns;
        let zeroes = [0u8; PAGE_SIZE];
        // The pages left are in use: zero each, one at a time (no list of
        // them: a walk from the last one zeroed).
        let mut from = Some(first);
        while let Some(at) = from {
            let next = {
                let guard = epoch::pin();
                self.tree
                    .next_present(at, &guard)
                    .filter(|&(index, _)| index <= last)
                    .map(|(index, slot)| (index, slot.load()))
            };
            let Some((index, w)) = next else {
                break;
            };
            from = index.checked_add(1);
            if !w.is_present() {
                continue;
            }
            let frame = w.present_frame();
            // No reference of our own: we hold the remover lock, and only a
            // remover takes a page out of the tree, so the page (held by
            // someone, or we would have removed it) and its frame stay. So a
            // user holding the page at any count cannot stop this.
            // Faults between their end check and their install finish first
            // (short: no I/O), so the second zap sees their entries.
            self.wait_for_mappers(index);
            // WRITEBACK first: a write of the old contents in flight must
            // reach the store before a truncate cuts it or a punch punches
            // it, not after (it would put stale bytes back beyond the end or
            // in the hole). Later writebacks find the page clean (or zero),
            // or beyond the end and drop it. LOCKED: any state,
            // loading included (the page lock waits for a read).
            self.pool.lock_bit(frame, flags::WRITEBACK);
            self.pool.lock(frame);
            self.pool.write_page(frame, &zeroes);
            let was_dirty = self.pool.flags(frame) & flags::DIRTY != 0;
            self.pool.clear_flags(frame, flags::DIRTY);
            self.pool.unlock(frame);
            self.pool.unlock_bit(frame, flags::WRITEBACK);
            self.sync_dirty_mark(index, frame);
            report.zeroed += 1;
            report.discarded += u64::from(was_dirty);
        }
        report.shootdowns += self.zap_mappings(&mut scratch.mappers, first, last, cows);
        report
    }

    /// Zeroes bytes `[from, to)` of page `index` if it is cached (a hole
    /// punch's partial first or last page; the remover lock held), after a
    /// write-back of it in flight has reached the store, so that write
    /// cannot land after the store's punch with the old bytes, and any later
    /// one copies the zeroes. The page keeps its other bytes, its dirty
    /// state and its mappings (only whole pages are unmapped, as Linux's
    /// `truncate_pagecache_range` does). Returns whether it was cached.
    pub(super) fn zero_partial(&self, index: u64, from: usize, to: usize) -> bool {
        let w = {
            let guard = epoch::pin();
            self.tree.lookup(index, &guard).map(|slot| slot.load())
        };
        let Some(w) = w.filter(|w| w.is_present()) else {
            return false;
        };
        // No reference of our own, as in the zero loop above: only a remover
        // takes a page out of the tree, and we hold the remover lock.
        let frame = w.present_frame();
        self.pool.lock_bit(frame, flags::WRITEBACK);
        self.pool.lock(frame);
        let zeroes = [0u8; PAGE_SIZE];
        self.pool
            .write(frame, from, &zeroes[..to - from])
            .expect("a partial page's range is inside the page");
        self.pool.unlock(frame);
        self.pool.unlock_bit(frame, flags::WRITEBACK);
        true
    }

    /// Waits until no fault is between its end check and its install on the
    /// page at `index` (its mapping count, read SeqCst: the second half of
    /// the pair with `PageMap::map_page`). Faults run only a short callback
    /// there (no I/O), so this is short.
    pub(crate) fn wait_for_mappers(&self, index: u64) {
        loop {
            let guard = epoch::pin();
            let Some(slot) = self.tree.lookup(index, &guard) else {
                return;
            };
            if slot.load_seqcst().mapping() == 0 {
                return;
            }
            drop(guard);
            crate::sync::spin_hint();
        }
    }
}
