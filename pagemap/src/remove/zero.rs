//! Zap and zero: the cache's half of truncate and hole punch. Every
//! mapping's entries of the range are cleared, the removal passes take the
//! pages nobody holds, the pages in use are zeroed (each once the faults in
//! flight on it have installed their entries), and the entries are cleared
//! again. Truncate's zaps take private copy-on-write copies too; a hole
//! punch's spare them ([`Mapper::zap_shared`]), and zero just the punched
//! bytes of a partial first or last page.

use crate::frame::{flags, FrameId};
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::map::{PageMap, Scratch};
use crate::mapper::Mapper;
use crate::shootdown::ShootdownBatch;
use crate::slot::{self, Refused};
use crate::sync::{epoch, Ordering};
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
    ///
    /// `detach` (truncate): the held pages leave the tree too, detached
    /// from their holders ([`detach_held`](Self::detach_held)), so a later
    /// load after the file grows again gets a fresh page. A hole punch
    /// keeps them, zeroed, at their index.
    pub(super) fn remove_or_zero_locked(
        &self,
        scratch: &mut Scratch,
        first: u64,
        last: u64,
        detach: bool,
    ) -> RemoveReport {
        self.zap_remove_zero(scratch, first, last, true, detach)
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
        self.zap_remove_zero(scratch, first, last, false, false)
    }

    /// Zap (`cows`: private copies too), remove or zero (`detach`: and
    /// detach the held pages), zap again.
    fn zap_remove_zero(
        &self,
        scratch: &mut Scratch,
        first: u64,
        last: u64,
        cows: bool,
        detach: bool,
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
        // Our holds of the pages we detach, put after the second zap: a
        // fault that installed an entry of one between the first zap and
        // the detach keeps reaching the frame until then (loom found the
        // frame freed under that entry when the put came first).
        let mut detached = Vec::new();
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
            if detach {
                // Before the zeroing, under the page lock: a write either
                // came before (and is zeroed and discarded here) or sees
                // the flag and is refused. Before the orphan count, which
                // reuses the index word (`FramePool::owner`).
                self.pool.set_flags(frame, flags::DETACHED);
            }
            self.pool.write_page(frame, &zeroes);
            let was_dirty = self.pool.flags(frame) & flags::DIRTY != 0;
            self.pool.clear_flags(frame, flags::DIRTY);
            if detach {
                self.detach_held(index, frame);
            }
            self.pool.unlock(frame);
            self.pool.unlock_bit(frame, flags::WRITEBACK);
            if detach {
                // Our own hold, taken by `detach_held` so that no holder
                // frees the frame while we still have its locks, nor before
                // the second zap (below).
                detached.push(frame);
                report.detached += 1;
            } else {
                self.sync_dirty_mark(index, frame);
            }
            report.zeroed += 1;
            report.discarded += u64::from(was_dirty);
        }
        report.shootdowns += self.zap_mappings(&mut scratch.mappers, first, last, cows);
        for frame in detached {
            self.put_detached(frame);
        }
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

    /// Takes the held page at `index` (in `frame`: page lock and WRITEBACK
    /// held, DETACHED set, contents zeroed and clean) out of the tree: its
    /// holders' count moves from the slot word into the frame (plus one
    /// hold of our own, which the caller puts after unlocking), the slot
    /// is emptied and the page uncounted. From the detach CAS on, holders
    /// find their frame gone from the slot and put (or clone) on the frame;
    /// the last put frees it (`PageMap::put_detached`).
    ///
    /// The detach waits for faults in their window on the page (their hold
    /// is put on the slot: [`slot::detach`]); they see the new end and
    /// leave without taking the page lock, so waiting with it held is
    /// short.
    fn detach_held(&self, index: u64, frame: FrameId) {
        loop {
            let g = self.tree.lock();
            let guard = epoch::pin();
            let slot = self
                .tree
                .lookup(index, &guard)
                .expect("a held page stays in the tree: only the remover removes");
            let detached = slot.update(|w| {
                if w.frame() != Some(frame) {
                    return Err(Refused::Absent);
                }
                // The count first, for exactly the word the CAS replaces:
                // the CAS (Release) publishes it to every holder that sees
                // the page gone (their Acquire loads in `Slot::put_of`).
                self.pool.set_orphans(frame, w.refs() + 1);
                slot::detach(w)
            });
            match detached {
                Ok(_) => {
                    // Counted before the slot empties, under the writer
                    // lock: no remover unlinks the node from now on.
                    self.detached.fetch_add(1, Ordering::Relaxed);
                    let f = self.tree.remove_yanked(index, false, &g);
                    debug_assert_eq!(f, Some(frame));
                    self.nr_pages.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                Err(Refused::Busy) => {
                    drop(g);
                    drop(guard);
                    self.wait_for_mappers(index);
                }
                Err(r) => unreachable!("the remover's held page changed: {r:?}"),
            }
        }
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
