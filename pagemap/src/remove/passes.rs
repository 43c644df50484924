//! The pass state machine of a removal: mark, revoke, shootdown, reap,
//! write back, yank (the module docs of `crate::remove` list them), one
//! pass per [`Steps::step`], and [`Removal`], which lets a caller step it.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::frame::{flags, FrameId};
use crate::map::{PageMap, Wrote};
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
    /// The removal passes over `[first, last]`; the caller is the remover.
    pub(super) fn remove_locked(&self, first: u64, last: u64, policy: Policy) -> RemoveReport {
        let mut r = Steps::new(self, first, last, policy);
        while r.step() != Pass::Done {}
        r.report
    }

    /// Pass 1: marks the unreferenced pages of `[first, last]` REMOVAL
    /// (skipping pinned ones if the policy says so) and snapshots the
    /// mappings of the range, under the reverse-map read lock so that no
    /// mapping appears between the pinned check and the snapshot.
    fn mark(
        &self,
        first: u64,
        last: u64,
        policy: Policy,
        report: &mut RemoveReport,
    ) -> (Victims, Vec<Arc<dyn Mapper>>) {
        let rmap = self.rmap.read();
        let guard = epoch::pin();
        let mut pages = Vec::new();
        // Pages up to here are pinned (a pinned mapping's range is skipped
        // whole once found, as in Akaros, without asking the index again).
        let mut pinned_through: Option<u64> = None;
        self.for_each_present(first, last, &guard, &mut |index, slot| {
            if policy.skip_pinned {
                if pinned_through.is_none_or(|p| index > p) {
                    pinned_through = rmap.pinned_until(index);
                }
                if pinned_through.is_some_and(|p| index <= p) {
                    report.pinned += 1;
                    return;
                }
            }
            match slot.update(slot::mark_removal) {
                Ok((_, w)) => pages.push((index, w.present_frame())),
                Err(Refused::Busy) => report.referenced += 1,
                Err(_) => {}
            }
        });
        let mut mappers = rmap.overlapping(first, last);
        if policy.skip_pinned {
            // Their pages were not marked: nothing of theirs to unmap.
            mappers.retain(|m| !m.is_pinned());
        }
        (Victims::new(pages), mappers)
    }

    /// Calls `f` on every present page of `[first, last]`, in order.
    pub(crate) fn for_each_present<'g>(
        &self,
        first: u64,
        last: u64,
        guard: &'g epoch::Guard,
        f: &mut dyn FnMut(u64, &'g slot::Slot),
    ) {
        let mut from = first;
        while let Some((index, slot)) = self.tree.next_present(from, guard) {
            if index > last {
                break;
            }
            f(index, slot);
            match index.checked_add(1) {
                Some(n) => from = n,
                None => break,
            }
        }
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
    pub(super) _remover: MutexGuard<'a, ()>,
}

impl Removal<'_> {
    /// The last pass run.
    pub fn pass(&self) -> Pass {
        self.steps.pass
    }

    /// Runs the next pass and returns it (`Done` once finished).
    pub fn step(&mut self) -> Pass {
        self.steps.step()
    }

    /// The pages marked in pass 1 (empty before it).
    pub fn victims(&self) -> &Victims {
        &self.steps.victims
    }

    /// Runs the remaining passes and returns the report.
    pub fn finish(mut self) -> RemoveReport {
        while self.steps.step() != Pass::Done {}
        core::mem::take(&mut self.steps.report)
    }
}

impl Drop for Removal<'_> {
    fn drop(&mut self) {
        // Never leave pages marked and entries revoked behind.
        while self.steps.step() != Pass::Done {}
    }
}

/// The state of a removal between passes.
pub(super) struct Steps<'a> {
    map: &'a PageMap,
    first: u64,
    last: u64,
    policy: Policy,
    pass: Pass,
    victims: Victims,
    mappers: Vec<Arc<dyn Mapper>>,
    batch: Option<ShootdownBatch>,
    /// Victims still marked after pass 5.
    marked: Vec<(u64, FrameId)>,
    report: RemoveReport,
}

impl<'a> Steps<'a> {
    pub(super) fn new(map: &'a PageMap, first: u64, last: u64, policy: Policy) -> Self {
        Self {
            map,
            first,
            last,
            policy,
            pass: Pass::Start,
            victims: Victims::default(),
            mappers: Vec::new(),
            batch: None,
            marked: Vec::new(),
            report: RemoveReport::default(),
        }
    }

    fn step(&mut self) -> Pass {
        let map = self.map;
        self.pass = match self.pass {
            Pass::Start => {
                // Pass 1: mark, and snapshot the mappings.
                if self.first <= self.last {
                    let (v, m) = map.mark(self.first, self.last, self.policy, &mut self.report);
                    self.victims = v;
                    self.mappers = m;
                }
                Pass::Marked
            }
            Pass::Marked => {
                // Pass 2: entries not present, address spaces into one batch.
                let mut batch = match self.policy.batching {
                    Batching::PerSpace => ShootdownBatch::new(),
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
                }
                Pass::ShotDown
            }
            Pass::ShotDown => {
                // Pass 4: harvest dirty bits and clear the entries.
                let mut dirty = Vec::new();
                if !self.victims.is_empty() {
                    for m in &self.mappers {
                        m.reap(&self.victims, &mut |index| dirty.push(index));
                    }
                }
                for index in dirty {
                    let frame = self
                        .victims
                        .frame_at(index)
                        .expect("a mapper reaped a page that is not a victim");
                    // We own the page (marked, or kept by whoever took it),
                    // and only a remover frees pages: the frame is this page's.
                    map.mark_frame_dirty(index, frame);
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
                        Err(e) => report.errors.push(e),
                    }
                }
                Pass::WrittenBack
            }
            Pass::WrittenBack => {
                // Pass 6: yank what is still marked; free after the writer lock.
                let freed = map.yank_marked(
                    core::mem::take(&mut self.marked),
                    self.policy.discard,
                    &mut self.report.raced,
                    &mut self.report.discarded,
                );
                self.report.removed = freed.len() as u64;
                for frame in freed {
                    map.pool.free(frame);
                }
                Pass::Done
            }
            Pass::Done => Pass::Done,
        };
        self.pass
    }
}
