//! The pass state machine of a removal: mark, revoke, shootdown, reap,
//! write back, yank (the module docs of `crate::remove` list them), one
//! pass per [`Steps::step`], and [`Removal`], which lets a caller step it.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::frame::{flags, FrameId};
use crate::map::{PageMap, Scratch, Wrote, REMOVE_BATCH};
use crate::mapper::{Mapper, Victims};
use crate::shootdown::ShootdownBatch;
use crate::slot::{self, Refused};
use crate::sync::{epoch, MutexGuard};

use super::{Batching, RemoveReport};

/// How a removal treats pinned mappings and dirty pages.
#[derive(Clone, Copy, Debug)]
pub(super) struct Policy {
    pub(super) batching: Batching,
    /// Leave the pages of pinned mappings alone (removal), or not (truncate:
    /// as in Linux, truncation unmaps mlocked pages too).
    pub(super) skip_pinned: bool,
    /// Drop dirty data instead of writing it back.
    pub(super) discard: bool,
}

pub(super) const REMOVE: Policy = Policy {
    batching: Batching::PerSpace,
    skip_pinned: true,
    discard: false,
};

impl PageMap {
    /// Reclaim's eviction of `chosen` (pages the eviction policy chose, by
    /// index, all of this map): the removal passes over exactly those
    /// pages, each marked only if it is still in that frame, unreferenced,
    /// not hit since reclaim looked ([`slot::mark_evict`]) and not in a pinned
    /// mapping. Dirty victims are written back in pass 5 (one request
    /// each), mapped ones unmapped with one shootdown per address space.
    /// `wait`: whether to wait for the remover lock. A load's miss waits (it
    /// holds no remover lock, and removers never allocate); an allocation
    /// inside a fault's `map_page` callback must not (a truncate holding
    /// this lock waits for that callback), so a busy remover makes it keep
    /// this map's victims, counted so, and try again.
    pub(crate) fn evict_chosen(
        &self,
        chosen: &[(u64, FrameId)],
        wait: bool,
        out: &mut crate::frame::ReclaimReport,
    ) {
        let scratch = if wait {
            Some(self.remover.lock())
        } else {
            self.remover.try_lock()
        };
        let Some(mut scratch) = scratch else {
            out.kept += chosen.len() as u64;
            return;
        };
        let mapped = {
            let rmap = self.rmap.read();
            if rmap.len() == 0 {
                0
            } else {
                chosen.iter().filter(|v| rmap.covers(v.0)).count() as u64
            }
        };
        let mut r = Steps::new(self, 1, 0, REMOVE, core::mem::take(&mut *scratch));
        r.chosen = Some(chosen);
        while r.step() != Pass::Done {}
        *scratch = r.take_scratch();
        drop(scratch);
        let report = &r.report;
        out.freed += report.removed;
        out.dirty += report.written;
        out.shootdowns += report.shootdowns;
        out.mapped += mapped.min(report.removed);
        out.kept += (chosen.len() as u64).saturating_sub(report.removed);
        out.write_errors += report.errors.len() as u64 + report.errors_dropped;
        use crate::frame::map_ctr as c;
        self.stats.add(c::EVICTED, report.removed);
        self.stats.add(c::EVICTED_DIRTY, report.written);
        self.stats
            .add(c::EVICTED_MAPPED, mapped.min(report.removed));
    }

    /// Pass 1 of an eviction: marks what it can of `chosen` (see
    /// [`evict_chosen`](Self::evict_chosen)) into `pages` and snapshots
    /// the mappings over their span.
    fn mark_chosen(
        &self,
        chosen: &[(u64, FrameId)],
        pages: &mut Vec<(u64, FrameId)>,
        mappers: &mut Vec<Arc<dyn Mapper>>,
        report: &mut RemoveReport,
    ) {
        let rmap = self.rmap.read();
        let guard = epoch::pin();
        pages.clear();
        mappers.clear();
        for &(index, frame) in chosen {
            // Sorted, so a repeat is the previous entry.
            if pages.last().is_some_and(|p| p.0 >= index) {
                continue;
            }
            if rmap.len() > 0 && rmap.pinned_covers(index) {
                report.pinned += 1;
                continue;
            }
            let Some(slot) = self.tree.lookup(index, &guard) else {
                continue;
            };
            let marked = slot.update(|w| {
                if w.frame() != Some(frame) {
                    return Err(Refused::Absent);
                }
                slot::mark_evict(w)
            });
            match marked {
                Ok(_) => pages.push((index, frame)),
                Err(Refused::Busy) => report.referenced += 1,
                Err(_) => {}
            }
        }
        if let (Some(first), Some(last)) = (pages.first(), pages.last()) {
            rmap.for_each_overlapping(first.0, last.0, &mut |_, m| {
                if !m.is_pinned() {
                    mappers.push(m.clone());
                }
                true
            });
        }
    }
}

impl PageMap {
    /// The removal passes over `[first, last]`, a batch of at most
    /// [`REMOVE_BATCH`] pages at a time; the caller is the remover, and
    /// lends its scratch space.
    pub(super) fn remove_locked(
        &self,
        scratch: &mut Scratch,
        first: u64,
        last: u64,
        policy: Policy,
    ) -> RemoveReport {
        let mut r = Steps::new(self, first, last, policy, core::mem::take(scratch));
        while r.step() != Pass::Done {}
        *scratch = r.take_scratch();
        core::mem::take(&mut r.report)
    }

    /// Pass 1: marks the unreferenced pages of `[first, last]` REMOVAL, at
    /// most [`REMOVE_BATCH`] of them, into `pages` (skipping pinned ones if
    /// the policy says so) and snapshots the mappings of the range into
    /// `mappers`, under the reverse-map read lock so that no mapping appears
    /// between the pinned check and the snapshot. Returns where the next
    /// batch starts, if the batch filled before the range ended.
    fn mark(
        &self,
        first: u64,
        last: u64,
        policy: Policy,
        pages: &mut Vec<(u64, FrameId)>,
        mappers: &mut Vec<Arc<dyn Mapper>>,
        report: &mut RemoveReport,
    ) -> Option<u64> {
        let rmap = self.rmap.read();
        let guard = epoch::pin();
        pages.clear();
        // Pages up to here are pinned (a pinned mapping's range is skipped
        // whole once found, as in Akaros, without asking the index again).
        let mut pinned_through: Option<u64> = None;
        let resume = self.walk_present(first, last, &guard, &mut |index, slot| {
            if policy.skip_pinned {
                if pinned_through.is_none_or(|p| index > p) {
                    pinned_through = rmap.pinned_until(index);
                }
                if pinned_through.is_some_and(|p| index <= p) {
                    report.pinned += 1;
                    return true;
                }
            }
            match slot.update(slot::mark_removal) {
                Ok((_, w)) => pages.push((index, w.present_frame())),
                Err(Refused::Busy) => report.referenced += 1,
                Err(_) => {}
            }
            pages.len() < REMOVE_BATCH
        });
        // The batch's own range: the mappings of pages beyond it are the
        // next batch's business.
        let batch_last = resume.map_or(last, |next| next - 1);
        mappers.clear();
        rmap.for_each_overlapping(first, batch_last, &mut |_, m| {
            // Pinned mappings' pages were not marked: nothing of theirs to unmap.
            if !(policy.skip_pinned && m.is_pinned()) {
                mappers.push(m.clone());
            }
            true
        });
        resume
    }
}

/// The passes of a removal, in order; [`Removal::step`] runs the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pass {
    /// Nothing done yet.
    Start,
    /// 1: unreferenced pages marked REMOVAL, mappings snapshotted.
    Marked,
    /// 2: their entries made not present in every mapping.
    Revoked,
    /// 3: one shootdown per address space issued and acknowledged.
    ShotDown,
    /// 4: entries cleared, dirty bits handed to the pages.
    Reaped,
    /// 5: dirty pages written back.
    WrittenBack,
    /// 6: what was still marked yanked and freed.
    Done,
}

/// A removal in progress, one pass per [`step`](Self::step); see
/// [`PageMap::begin_remove`].
///
/// ```
/// use std::sync::Arc;
/// use pagemap::{Batching, FramePool, MemStore, PageMap, Pass};
///
/// let map = PageMap::new(Arc::new(FramePool::new(8).unwrap()), Arc::new(MemStore::new()));
/// drop(map.load(1).unwrap());
/// drop(map.load(2).unwrap());
/// let mut removal = map.begin_remove(0..4, Batching::PerSpace);
/// assert_eq!(removal.step(), Pass::Marked);
/// drop(map.find(2).unwrap()); // a lookup during the removal keeps page 2
/// let report = removal.finish();
/// assert_eq!((report.removed, report.raced), (1, 1));
/// assert_eq!(map.cached_indices(..), vec![2]);
/// ```
pub struct Removal<'a> {
    pub(super) steps: Steps<'a>,
    /// The remover lock; the removal has taken its scratch space and gives
    /// it back when done.
    pub(super) scratch: MutexGuard<'a, Scratch>,
}

impl Removal<'_> {
    /// The last pass run.
    pub fn pass(&self) -> Pass {
        self.steps.pass
    }

    /// Runs the next pass and returns it (`Done` once finished). A removal
    /// of more than [`REMOVE_BATCH`] pages runs the passes once per batch:
    /// after a batch's pass 6 the same step runs the next batch's pass 1
    /// and returns [`Pass::Marked`]; `Done` comes after the last batch.
    pub fn step(&mut self) -> Pass {
        let pass = self.steps.step();
        if pass == Pass::Done {
            *self.scratch = self.steps.take_scratch();
        }
        pass
    }

    /// The pages of the current batch marked in pass 1 (empty before it).
    pub fn victims(&self) -> &Victims {
        &self.steps.victims
    }

    /// Runs the remaining passes and returns the report.
    pub fn finish(mut self) -> RemoveReport {
        while self.step() != Pass::Done {}
        core::mem::take(&mut self.steps.report)
    }
}

impl Drop for Removal<'_> {
    fn drop(&mut self) {
        // Never leave pages marked and entries revoked behind.
        while self.step() != Pass::Done {}
    }
}

/// The state of a removal between passes.
pub(super) struct Steps<'a> {
    map: &'a PageMap,
    first: u64,
    last: u64,
    policy: Policy,
    pass: Pass,
    /// The batch's victims (the scratch space's `pages`).
    victims: Victims,
    mappers: Vec<Arc<dyn Mapper>>,
    /// Where the next batch starts, if the range goes on.
    resume: Option<u64>,
    batch: Option<ShootdownBatch>,
    /// A per-space batch from the scratch space, reused (flushed, so empty).
    spare: Option<ShootdownBatch>,
    /// Victims still marked after pass 5.
    marked: Vec<(u64, FrameId)>,
    report: RemoveReport,
    /// An eviction's victims (instead of the range's pages), taken by the
    /// first pass 1.
    chosen: Option<&'a [(u64, FrameId)]>,
}

impl<'a> Steps<'a> {
    pub(super) fn new(
        map: &'a PageMap,
        first: u64,
        last: u64,
        policy: Policy,
        scratch: Scratch,
    ) -> Self {
        let Scratch {
            pages,
            mappers,
            marked,
            batch,
        } = scratch;
        Self {
            map,
            first,
            last,
            policy,
            pass: Pass::Start,
            victims: Victims::new(pages),
            mappers,
            resume: None,
            batch: None,
            spare: batch,
            marked,
            report: RemoveReport::default(),
            chosen: None,
        }
    }

    /// The scratch space back, emptied (its capacity kept for the next
    /// removal).
    pub(super) fn take_scratch(&mut self) -> Scratch {
        let mut pages = self.victims.take_pages();
        pages.clear();
        self.mappers.clear();
        self.marked.clear();
        Scratch {
            pages,
            mappers: core::mem::take(&mut self.mappers),
            marked: core::mem::take(&mut self.marked),
            batch: self.spare.take(),
        }
    }

    /// Pass 1 over the next batch from `self.first`.
    fn mark_batch(&mut self) {
        let mut pages = self.victims.take_pages();
        if let Some(chosen) = self.chosen.take() {
            self.map
                .mark_chosen(chosen, &mut pages, &mut self.mappers, &mut self.report);
            self.resume = None;
            self.victims = Victims::new(pages);
            return;
        }
        self.resume = if self.first <= self.last {
            self.map.mark(
                self.first,
                self.last,
                self.policy,
                &mut pages,
                &mut self.mappers,
                &mut self.report,
            )
        } else {
            pages.clear();
            None
        };
        self.victims = Victims::new(pages);
    }

    fn step(&mut self) -> Pass {
        let map = self.map;
        self.pass = match self.pass {
            Pass::Start => {
                // Pass 1: mark, and snapshot the mappings.
                self.mark_batch();
                Pass::Marked
            }
            Pass::Marked => {
                // Pass 2: entries not present, address spaces into one batch.
                let mut batch = match self.policy.batching {
                    Batching::PerSpace => self.spare.take().unwrap_or_default(),
                    Batching::PerPage => ShootdownBatch::unbatched(),
                };
                if !self.victims.is_empty() {
                    for m in &self.mappers {
                        m.revoke(&self.victims, &mut batch);
                    }
                }
                self.batch = Some(batch);
                Pass::Revoked
            }
            Pass::Revoked => {
                // Pass 3: one acknowledged shootdown per address space.
                if let Some(mut batch) = self.batch.take() {
                    self.report.shootdowns += batch.flush().shootdowns;
                    if self.policy.batching == Batching::PerSpace {
                        // Empty again, its buffers kept for the next batch.
                        self.spare = Some(batch);
                    }
                }
                Pass::ShotDown
            }
            Pass::ShotDown => {
                // Pass 4: harvest dirty bits and clear the entries. Which
                // victims came back dirty: one bit each (a batch is at most
                // REMOVE_BATCH pages), so no list grows with the mappers.
                let mut dirty = [0u64; REMOVE_BATCH / 64];
                let mut strays: Vec<(u64, FrameId)> = Vec::new();
                if !self.victims.is_empty() {
                    let victims = &self.victims;
                    for m in &self.mappers {
                        m.reap(victims, &mut |index, frame| {
                            match victims.position(index) {
                                Some(at) if victims.pages()[at].1 == frame => {
                                    dirty[at / 64] |= 1 << (at % 64);
                                }
                                // Not a victim (a mapper broke the
                                // contract): kept for after the reaps (the
                                // mapper may hold its own locks here). A
                                // list only in that case.
                                _ => strays.push((index, frame)),
                            }
                        });
                    }
                }
                for (at, &(index, frame)) in self.victims.pages().iter().enumerate() {
                    if dirty[at / 64] & (1 << (at % 64)) != 0 {
                        // We own the page (marked, or kept by whoever took
                        // it), and only a remover frees pages: the frame is
                        // this page's.
                        map.mark_frame_dirty(index, frame);
                    }
                }
                // A stray bit may still be data a CPU wrote into that page:
                // keep it if the page is still cached in that frame; else
                // there is nothing left to keep it in.
                self.report.not_victims += strays.len() as u64;
                for (index, frame) in strays {
                    if let Some(page) = map.find_frame(index, frame) {
                        page.mark_dirty();
                    }
                }
                Pass::Reaped
            }
            Pass::Reaped => {
                // Pass 5: write back dirty pages, no map lock held.
                // (Discarding removals drop the data in pass 6, once nobody
                // can reach the page.)
                let report = &mut self.report;
                for &(index, frame) in self.victims.pages() {
                    if self.policy.discard || map.pool.flags(frame) & flags::DIRTY == 0 {
                        self.marked.push((index, frame));
                        continue;
                    }
                    match map.write_marked(index, frame) {
                        Ok(Some(wrote)) => {
                            report.written += u64::from(wrote == Wrote::Written);
                            report.discarded += u64::from(wrote == Wrote::Discarded);
                            self.marked.push((index, frame));
                        }
                        Ok(None) => report.raced += 1,
                        Err(e) => {
                            crate::map::record(&mut report.errors, &mut report.errors_dropped, e)
                        }
                    }
                }
                Pass::WrittenBack
            }
            Pass::WrittenBack => {
                // Pass 6: yank what is still marked; free after the writer lock.
                map.yank_marked(
                    &mut self.marked,
                    self.policy.discard,
                    &mut self.report.raced,
                    &mut self.report.discarded,
                );
                self.report.removed += self.marked.len() as u64;
                for &(_, frame) in &self.marked {
                    map.pool.free(frame);
                }
                self.marked.clear();
                match self.resume {
                    // The next batch's pass 1, in this same step.
                    Some(next) => {
                        self.first = next;
                        self.mark_batch();
                        Pass::Marked
                    }
                    None => Pass::Done,
                }
            }
            Pass::Done => Pass::Done,
        };
        self.pass
    }
}
