//! Zap and zero: the cache's half of truncate and hole punch. Every
//! mapping's entries of the range are cleared, the removal passes take the
//! pages nobody holds, the pages in use are zeroed (each once the faults in
//! flight on it have installed their entries), and the entries are cleared
//! again.

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
    /// Clears every entry of every mapping of `[first, last]`, private
    /// copies and pinned mappings included ([`Mapper::zap`](crate::Mapper::zap)), with one
    /// shootdown per address space. Returns the shootdowns issued. The
    /// mappings are snapshotted into the remover's reusable `mappers`.
    fn zap_mappings(&self, mappers: &mut Vec<Arc<dyn Mapper>>, first: u64, last: u64) -> u64 {
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
            m.zap(first.max(mf), last.min(ml), &mut batch);
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
        let shootdowns = self.zap_mappings(&mut scratch.mappers, first, last);
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
            // reach the store before a truncate cuts it, not after (it would
            // put stale bytes back beyond the end). Later writebacks find the
            // page clean, or beyond the end and drop it. LOCKED: any state,
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
        report.shootdowns += self.zap_mappings(&mut scratch.mappers, first, last);
        for frame in detached {
            self.put_detached(frame);
        }
        report
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
    fn wait_for_mappers(&self, index: u64) {
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
