//! Zap and zero: the cache's half of truncate and hole punch. Every
//! mapping's entries of the range are cleared, the removal passes take the
//! pages nobody holds, the pages in use are zeroed (each once the faults in
//! flight on it have installed their entries), and the entries are cleared
//! again.

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
    pub(super) fn remove_or_zero_locked(
        &self,
        scratch: &mut Scratch,
        first: u64,
        last: u64,
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
            self.pool.write_page(frame, &zeroes);
            let was_dirty = self.pool.flags(frame) & flags::DIRTY != 0;
            self.pool.clear_flags(frame, flags::DIRTY);
            self.pool.unlock(frame);
            self.pool.unlock_bit(frame, flags::WRITEBACK);
            self.sync_dirty_mark(index, frame);
            report.zeroed += 1;
            report.discarded += u64::from(was_dirty);
        }
        report.shootdowns += self.zap_mappings(&mut scratch.mappers, first, last);
        report
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
