//! Taking pages out of a page map whose pages may be mapped: the multi-pass
//! removal (`docs/design.md`, section 5.4; Akaros's `pm_remove_contig`), best-effort
//! invalidate, remove-or-zero, truncate and destroy.
//!
//! Removal passes, for the pages of a range:
//! 1. mark every unreferenced page REMOVAL (a CAS on its slot), skipping the
//!    pages of pinned mappings; snapshot the mappings of the range;
//! 2. every mapping makes its entries for the marked pages not present
//!    ([`Mapper::revoke`]) and adds its address space to one
//!    [`ShootdownBatch`];
//! 3. the batch issues one acknowledged shootdown per address space;
//! 4. now that no CPU can write through a stale translation, every mapping
//!    clears those entries, handing their dirty bits to the pages
//!    ([`Mapper::reap`]);
//! 5. dirty pages are written back with no map lock held;
//! 6. what is still marked is yanked under the writer lock and its frame
//!    freed.
//!
//! Anyone who takes a reference meanwhile (a lookup, a fault, a write, a
//! copy-on-write fault, munmap harvesting a dirty bit) clears REMOVAL, so
//! that page's yank fails and the page stays, intact, its entries
//! refaultable. A mapping added after pass 1 can only reach a marked page
//! through such a lookup, which is why the snapshot is enough.
//!
//! Removers of one map are serialised by one mutex: [`PageMap::remove`]
//! waits for another remover, [`PageMap::try_remove`] returns
//! [`Error::Busy`] instead (Akaros returned 0).

use std::ops::RangeBounds;
use std::sync::Arc;

use crate::error::Error;
use crate::frame::{flags, FrameId};
use crate::map::{frame_of, inclusive, PageMap, Wrote};
use crate::rmap::{Mapper, Victims};
use crate::shootdown::ShootdownBatch;
use crate::slot::{self, Refused};
use crate::sync::{epoch, MutexGuard, Ordering};
use crate::PAGE_SIZE;

/// What a removal ([`PageMap::remove`], [`PageMap::remove_or_zero`],
/// [`PageMap::truncate`]) did, page by page of the cached pages in its range.
#[derive(Debug, Default)]
pub struct RemoveReport {
    /// Pages removed and their frames returned to the pool.
    pub removed: u64,
    /// Pages skipped because someone held a reference when the removal
    /// began (for remove-or-zero and truncate, see `zeroed`).
    pub referenced: u64,
    /// Pages skipped because a pinned (MAP_LOCKED) mapping covers them.
    pub pinned: u64,
    /// Pages someone took while the removal was in progress (kept intact).
    pub raced: u64,
    /// Dirty pages written back before being removed.
    pub written: u64,
    /// Dirty pages whose data was dropped (remove-or-zero, truncate, or a
    /// page beyond the end of the file).
    pub discarded: u64,
    /// Pages in use that remove-or-zero zeroed instead of removing.
    pub zeroed: u64,
    /// Shootdowns issued: one per address space mapping the range.
    pub shootdowns: u64,
    /// Write errors (those pages are kept, dirty, with their data) and, for
    /// truncate, a store that failed to shrink.
    pub errors: Vec<Error>,
}

/// What [`PageMap::invalidate`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct InvalidateReport {
    /// Clean, unused, unmapped pages removed.
    pub invalidated: u64,
    /// Skipped: dirty.
    pub dirty: u64,
    /// Skipped: someone held a reference.
    pub referenced: u64,
    /// Skipped: a mapping covers the page.
    pub mapped: u64,
    /// Skipped: locked (being read) or under writeback.
    pub busy: u64,
    /// Skipped: taken while the invalidate ran.
    pub raced: u64,
}

/// What [`PageMap::destroy`] did.
#[derive(Debug, Default)]
pub struct DestroyReport {
    /// Dirty pages written back first.
    pub written: u64,
    /// Pages freed.
    pub freed: u64,
    /// Dirty pages whose data was dropped (`discard`).
    pub discarded: u64,
    /// Write errors: those pages are kept in the map, dirty, with their data.
    pub errors: Vec<Error>,
}

/// How a removal batches its TLB shootdowns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Batching {
    /// One acknowledged shootdown per address space mapping the range,
    /// whatever the number of pages or mappings: the protocol.
    #[default]
    PerSpace,
    /// One shootdown per page per mapping, as a remover without batching
    /// would issue: a baseline for benchmarks and tests.
    PerPage,
}

/// How a removal treats pinned mappings and dirty pages.
#[derive(Clone, Copy, Debug)]
struct Policy {
    batching: Batching,
    /// Leave the pages of pinned mappings alone (removal), or not (truncate:
    /// as in Linux, truncation unmaps mlocked pages too).
    skip_pinned: bool,
    /// Drop dirty data instead of writing it back.
    discard: bool,
}

impl PageMap {
    /// Removes the cached pages of `range` that nobody holds, mapped or not:
    /// the multi-pass protocol of the module docs. Pages held, pinned by a
    /// MAP_LOCKED mapping, or taken during the call are kept; dirty pages
    /// are written first and kept (dirty) if the write fails. Waits for a
    /// removal already running on this map.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pagemap::{FramePool, MemStore, PageMap};
    ///
    /// let store = Arc::new(MemStore::new());
    /// let map = PageMap::new(Arc::new(FramePool::new(8).unwrap()), store.clone());
    /// map.load(1).unwrap().write(0, b"x").unwrap();
    /// let held = map.load(2).unwrap();
    /// let report = map.remove(0..4);
    /// assert_eq!((report.removed, report.written, report.referenced), (1, 1, 1));
    /// assert_eq!(store.page(1).unwrap()[0], b'x');
    /// drop(held);
    /// assert_eq!(map.nr_pages(), 1);
    /// ```
    pub fn remove(&self, range: impl RangeBounds<u64>) -> RemoveReport {
        let Some((first, last)) = inclusive(&range) else {
            return RemoveReport::default();
        };
        let _remover = self.remover.lock();
        self.remove_locked(first, last, REMOVE)
    }

    /// [`remove`](Self::remove) with the given shootdown [`Batching`] (the
    /// per-page strategy is a baseline to measure the protocol against).
    pub fn remove_with(&self, range: impl RangeBounds<u64>, batching: Batching) -> RemoveReport {
        let Some((first, last)) = inclusive(&range) else {
            return RemoveReport::default();
        };
        let _remover = self.remover.lock();
        self.remove_locked(first, last, Policy { batching, ..REMOVE })
    }

    /// [`remove`](Self::remove), or [`Error::Busy`] at once if another
    /// remover is running on this map.
    pub fn try_remove(&self, range: impl RangeBounds<u64>) -> Result<RemoveReport, Error> {
        let Some((first, last)) = inclusive(&range) else {
            return Ok(RemoveReport::default());
        };
        let Some(_remover) = self.remover.try_lock() else {
            return Err(Error::Busy);
        };
        Ok(self.remove_locked(first, last, REMOVE))
    }

    /// Discards the cached data of `range` (the cache's half of a truncate
    /// or a hole punch; Akaros's remove-or-zero): every mapping's entries
    /// there are cleared, private copy-on-write copies and pinned mappings
    /// included; unused pages are removed, and pages in use are zeroed and
    /// cleaned instead. Dirty data in the range is dropped, not written.
    pub fn remove_or_zero(&self, range: impl RangeBounds<u64>) -> RemoveReport {
        let Some((first, last)) = inclusive(&range) else {
            return RemoveReport::default();
        };
        // It frees private copies: not while a fork copies them.
        let _invalidate = self.invalidate_lock.write();
        let _remover = self.remover.lock();
        self.remove_or_zero_locked(first, last)
    }

    /// Cuts the file at page `end`: from now on loads (and so faults) of a
    /// page at or after `end` fail with [`Error::BeyondEof`]; then
    /// everything cached or mapped from `end` on is discarded as by
    /// [`remove_or_zero`](Self::remove_or_zero), and the store is shrunk
    /// ([`BackingStore::truncate`](crate::BackingStore::truncate)). An `end`
    /// at or past the current one only moves the end.
    ///
    /// When it returns, no page table entry of any mapping shows a page at
    /// or beyond `end`, and none can appear: every access that starts after
    /// it faults with SIGBUS. Faults in flight are waited for (see
    /// [`map_page`](Self::map_page)), a fork copying private pages by
    /// [`invalidate_lock_shared`](Self::invalidate_lock_shared).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pagemap::{Error, FramePool, MemStore, PageMap};
    ///
    /// let map = PageMap::new(Arc::new(FramePool::new(8).unwrap()), Arc::new(MemStore::new()));
    /// map.load(5).unwrap().write(0, b"gone").unwrap();
    /// let report = map.truncate(3);
    /// assert_eq!((report.removed, report.discarded), (1, 1));
    /// assert!(matches!(map.load(5), Err(Error::BeyondEof { index: 5, end: 3 })));
    /// assert!(map.load(2).is_ok());
    /// ```
    pub fn truncate(&self, end: u64) -> RemoveReport {
        // Waits for a fork copying private copies of our pages (see
        // `invalidate_lock_shared`).
        let _invalidate = self.invalidate_lock.write();
        let _remover = self.remover.lock();
        {
            // Under the writer lock: an insert checks the end under it too,
            // so no page beyond the new end appears after this.
            let _g = self.lock.lock();
            let shrink = end < self.end();
            // SeqCst, through `sb`: the first half of the store-buffering
            // pair with the faults (then our reads of the slot words; see
            // `crate::fault`).
            crate::sync::sb::store(&self.end, end, Ordering::SeqCst);
            if !shrink {
                return RemoveReport::default();
            }
        }
        // Zap, remove or zero (waiting for the faults in their window on
        // every page still cached), zap again: an entry a fault installed
        // meanwhile is cleared by the second zap, and a fault after it sees
        // the new end (see `crate::fault`; Linux's `truncate_pagecache`).
        let mut report = self.remove_or_zero_locked(end, u64::MAX);
        if let Err(source) = self.store.truncate(end) {
            report.errors.push(Error::Truncate { end, source });
        }
        report
    }

    /// Best-effort invalidate of `range`: removes the pages that are clean,
    /// unused, unmapped, not locked and not under writeback; skips (and
    /// counts) the others. Never writes, never unmaps, never waits for a
    /// page.
    pub fn invalidate(&self, range: impl RangeBounds<u64>) -> InvalidateReport {
        let mut report = InvalidateReport::default();
        let Some((first, last)) = inclusive(&range) else {
            return report;
        };
        let _remover = self.remover.lock();
        let mut marked = Vec::new();
        {
            // The reverse map is read-locked while marking, so no mapping
            // appears between the "mapped?" check and the mark; one added
            // later reaches the page only through a lookup, which unmarks it.
            let rmap = self.rmap.read();
            let guard = epoch::pin();
            self.for_each_present(first, last, &guard, &mut |index, slot| {
                if rmap.covers(index) {
                    report.mapped += 1;
                    return;
                }
                let Ok((_, w)) = slot.update(slot::mark_removal) else {
                    if slot::refs(slot.load()) != 0 {
                        report.referenced += 1;
                    }
                    return;
                };
                let frame = frame_of(w);
                // After the mark: a writer's DIRTY came before its put, which
                // our CAS read, so a dirty page is seen here.
                let f = self.pool.flags(frame);
                if f & flags::DIRTY != 0 {
                    report.dirty += 1;
                } else if f & (flags::LOCKED | flags::WRITEBACK) != 0 {
                    report.busy += 1;
                } else {
                    marked.push((index, frame));
                    return;
                }
                self.unmark(index, frame);
            });
        }
        let mut raced = 0;
        let freed = self.yank_marked(marked, false, &mut raced, &mut 0);
        report.raced = raced;
        report.invalidated = freed.len() as u64;
        for frame in freed {
            self.pool.free(frame);
        }
        report
    }

    /// Empties the map for good: writes back every dirty page first (unless
    /// `discard`), then frees every page.
    ///
    /// # Panics
    /// If a mapping is registered or a page is held: destroying a map in use
    /// is a bug in the caller.
    pub fn destroy(&self, discard: bool) -> DestroyReport {
        let _remover = self.remover.lock();
        let mapped = self.nr_mappings();
        assert_eq!(mapped, 0, "destroying a page map with {mapped} mappings");
        let mut report = DestroyReport::default();
        if !discard {
            let wb = self.writeback(..);
            report.written = wb.written;
            report.errors = wb.errors;
        }
        let mut marked = Vec::new();
        {
            let guard = epoch::pin();
            self.for_each_present(0, u64::MAX, &guard, &mut |index, slot| {
                match slot.update(slot::mark_removal) {
                    Ok((_, w)) => {
                        let frame = frame_of(w);
                        if !discard && self.pool.flags(frame) & flags::DIRTY != 0 {
                            // Its write failed: keep it (no data is lost).
                            self.unmark(index, frame);
                        } else {
                            marked.push((index, frame));
                        }
                    }
                    Err(_) => panic!("destroying a page map whose page {index} is held"),
                }
            });
        }
        let mut raced = 0;
        let freed = self.yank_marked(marked, discard, &mut raced, &mut report.discarded);
        assert_eq!(raced, 0, "a page was taken while its map was destroyed");
        report.freed = freed.len() as u64;
        for frame in freed {
            self.pool.free(frame);
        }
        report
    }

    // ---- the passes ----------------------------------------------------

    /// Clears every entry of every mapping of `[first, last]`, private
    /// copies and pinned mappings included ([`Mapper::zap`]), with one
    /// shootdown per address space. Returns the shootdowns issued.
    fn zap_mappings(&self, first: u64, last: u64) -> u64 {
        let mappers = self.rmap.read().overlapping(first, last);
        if mappers.is_empty() {
            return 0;
        }
        let mut batch = ShootdownBatch::new();
        for m in &mappers {
            let (mf, ml) = m.file_pages();
            m.zap(first.max(mf), last.min(ml), &mut batch);
        }
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
    fn remove_or_zero_locked(&self, first: u64, last: u64) -> RemoveReport {
        let shootdowns = self.zap_mappings(first, last);
        let policy = Policy {
            batching: Batching::PerSpace,
            skip_pinned: false,
            discard: true,
        };
        let mut report = self.remove_locked(first, last, policy);
        report.shootdowns += shootdowns;
        let zeroes = [0u8; PAGE_SIZE];
        let mut held = Vec::new();
        {
            let guard = epoch::pin();
            self.for_each_present(first, last, &guard, &mut |index, slot| {
                let w = slot.load();
                if slot::is_present(w) {
                    held.push((index, frame_of(w)));
                }
            });
        }
        for (index, frame) in held {
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
        report.shootdowns += self.zap_mappings(first, last);
        report
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
            if slot::mapping(slot.load_seqcst()) == 0 {
                return;
            }
            drop(guard);
            crate::sync::spin_hint();
        }
    }

    /// The removal passes over `[first, last]`; the caller is the remover.
    fn remove_locked(&self, first: u64, last: u64, policy: Policy) -> RemoveReport {
        let mut r = Steps::new(self, first, last, policy);
        while r.step() != Pass::Done {}
        r.report
    }

    /// Starts a removal of `range` that runs one pass per
    /// [`Removal::step`], so that a test, a model or a deterministic fuzzer
    /// can act between the passes. Holds the remover lock until dropped
    /// (dropping it early finishes the remaining passes).
    pub fn begin_remove(&self, range: impl RangeBounds<u64>, batching: Batching) -> Removal<'_> {
        let remover = self.remover.lock();
        let (first, last) = inclusive(&range).unwrap_or((1, 0));
        Removal {
            steps: Steps::new(self, first, last, Policy { batching, ..REMOVE }),
            _remover: remover,
        }
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
                Ok((_, w)) => pages.push((index, frame_of(w))),
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
        let g = self.lock.lock();
        let guard = epoch::pin();
        for (index, frame) in marked {
            let Some(slot) = self.tree.lookup(index, &guard) else {
                continue;
            };
            let won = slot.update(|w| {
                if slot::frame(w) != frame.get() {
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
            debug_assert_eq!(f, frame.get());
            self.nr_pages.fetch_sub(1, Ordering::Relaxed);
            freed.push(frame);
        }
        freed
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
    steps: Steps<'a>,
    _remover: MutexGuard<'a, ()>,
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
        std::mem::take(&mut self.steps.report)
    }
}

impl Drop for Removal<'_> {
    fn drop(&mut self) {
        // Never leave pages marked and entries revoked behind.
        while self.steps.step() != Pass::Done {}
    }
}

/// The state of a removal between passes.
struct Steps<'a> {
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
    fn new(map: &'a PageMap, first: u64, last: u64, policy: Policy) -> Self {
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
                    std::mem::take(&mut self.marked),
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

const REMOVE: Policy = Policy {
    batching: Batching::PerSpace,
    skip_pinned: true,
    discard: false,
};
