//! The removal entry points, what a user calls, and their reports: each
//! takes the locks its protocol needs and runs the passes (`super::passes`)
//! or zap-and-zero (`super::zero`).

use alloc::vec::Vec;
use core::ops::RangeBounds;

use crate::error::Error;
use crate::frame::flags;
use crate::map::{inclusive, PageMap, REMOVE_BATCH};
use crate::slot;
use crate::sync::{epoch, Ordering};
use crate::PAGE_SIZE;

use super::passes::{Policy, Removal, Steps, REMOVE};

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
    /// Pages in use that remove-or-zero zeroed instead of removing
    /// (truncate's detached pages included: they are zeroed too).
    pub zeroed: u64,
    /// Pages in use that truncate took out of the cache anyway, leaving
    /// their holders' references detached (see
    /// [`PageRef::is_detached`](crate::PageRef::is_detached)); each also
    /// counts in `zeroed`.
    pub detached: u64,
    /// Shootdowns issued: one per address space mapping the range.
    pub shootdowns: u64,
    /// Dirty bits a [`Mapper::reap`](crate::Mapper::reap) reported for a
    /// page that was not a victim (a mapper bug): each handed to its page
    /// if still cached in that frame, none a panic.
    pub not_victims: u64,
    /// Write errors (those pages are kept, dirty, with their data) and, for
    /// truncate, a store that failed to shrink (at most
    /// [`MAX_REPORTED_ERRORS`](crate::MAX_REPORTED_ERRORS) kept).
    pub errors: Vec<Error>,
    /// Errors beyond the first [`MAX_REPORTED_ERRORS`](crate::MAX_REPORTED_ERRORS),
    /// counted but not kept (a failing device must not make a report grow
    /// with the range: those pages stay dirty and are retried all the same).
    pub errors_dropped: u64,
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
    /// Write errors: those pages are kept in the map, dirty, with their data
    /// (at most [`MAX_REPORTED_ERRORS`](crate::MAX_REPORTED_ERRORS) kept).
    pub errors: Vec<Error>,
    /// Errors beyond the first [`MAX_REPORTED_ERRORS`](crate::MAX_REPORTED_ERRORS),
    /// counted but not kept (a failing device must not make a report grow
    /// with the range: those pages stay dirty and are retried all the same).
    pub errors_dropped: u64,
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
        let mut scratch = self.remover.lock();
        self.remove_locked(&mut scratch, first, last, REMOVE)
    }

    /// [`remove`](Self::remove) with the given shootdown [`Batching`] (the
    /// per-page strategy is a baseline to measure the protocol against).
    pub fn remove_with(&self, range: impl RangeBounds<u64>, batching: Batching) -> RemoveReport {
        let Some((first, last)) = inclusive(&range) else {
            return RemoveReport::default();
        };
        let mut scratch = self.remover.lock();
        self.remove_locked(&mut scratch, first, last, Policy { batching, ..REMOVE })
    }

    /// [`remove`](Self::remove), or [`Error::Busy`] at once if another
    /// remover is running on this map.
    pub fn try_remove(&self, range: impl RangeBounds<u64>) -> Result<RemoveReport, Error> {
        let Some((first, last)) = inclusive(&range) else {
            return Ok(RemoveReport::default());
        };
        let Some(mut scratch) = self.remover.try_lock() else {
            return Err(Error::Busy);
        };
        Ok(self.remove_locked(&mut scratch, first, last, REMOVE))
    }

    /// Discards the cached data of `range` (the cache's half of a truncate
    /// or a hole punch; Akaros's remove-or-zero): every mapping's entries
    /// there are cleared, private copy-on-write copies and pinned mappings
    /// included; unused pages are removed, and pages in use are zeroed and
    /// cleaned instead. Dirty data in the range is dropped, not written.
    ///
    /// If that drops the dirty last page of an extending
    /// [`write_at`](Self::write_at) before its write-back, the store is
    /// made as long as the size
    /// ([`StoreControl::set_size`](crate::StoreControl::set_size)), the
    /// dropped bytes reading as zeroes; if that fails, the report's
    /// `errors` hold an [`Error::SetSize`] (the next fsync tries again).
    pub fn remove_or_zero(&self, range: impl RangeBounds<u64>) -> RemoveReport {
        let Some((first, last)) = inclusive(&range) else {
            return RemoveReport::default();
        };
        // It frees private copies: not while a fork copies them.
        let _invalidate = self.invalidate_lock.write();
        let mut scratch = self.remover.lock();
        let mut report = self.remove_or_zero_locked(&mut scratch, first, last, false);
        let persisted = self.persist_size_locked();
        self.record_persist(persisted, &mut report.errors, &mut report.errors_dropped);
        report
    }

    /// Cuts the file at page `end`: from now on loads (and so faults) of a
    /// page at or after `end` fail with [`Error::BeyondEof`]; then
    /// everything cached or mapped from `end` on is discarded as by
    /// [`remove_or_zero`](Self::remove_or_zero), except that pages in use
    /// leave the cache too (zeroed; their holders' references are detached:
    /// see [`PageRef::is_detached`](crate::PageRef::is_detached)), and the store is shrunk
    /// ([`StoreControl::set_size`](crate::StoreControl::set_size)). The page
    /// granular [`set_size`](Self::set_size): the size becomes
    /// `end * PAGE_SIZE` bytes, so an `end` past the current one extends the
    /// file (zeroing the old partial last page's tail, as `set_size` does).
    /// An `end` past the store's
    /// [`max_size`](crate::StoreControl::max_size) changes nothing: the
    /// report's `errors` hold an [`Error::Truncate`] with `EFBIG`; a store
    /// that refuses or fails to change its size is reported there too, and
    /// then nothing has changed either (unless a shrink's second cut of the
    /// store failed: the cache is truncated then, as
    /// [`set_size`](Self::set_size) says).
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
        let mut scratch = self.remover.lock();
        // The size in bytes moves with the end (an end no byte size can
        // say, past 2^52 pages, has no byte limit).
        let bytes = end.saturating_mul(crate::PAGE_SIZE as u64);
        let (mut report, r) = self.resize_with_store(&mut scratch, bytes, end);
        if let Err(source) = r {
            crate::map::record(
                &mut report.errors,
                &mut report.errors_dropped,
                Error::Truncate { end, source },
            );
        }
        report
    }

    /// Sets the file's size to `bytes` (Linux's `truncate_setsize` plus
    /// the file system's half: `ftruncate`), then the store's
    /// ([`StoreControl::set_size`](crate::StoreControl::set_size)).
    ///
    /// * **Shrinking**: pages wholly past the new end go as by
    ///   [`truncate`](Self::truncate) (mapped ones included; faults there
    ///   get SIGBUS from now on), and the tail of a now partial last page
    ///   is zeroed in the cache, under its page lock, after a write-back of
    ///   it in flight (with the old length) has finished, so that the store
    ///   is cut after it.
    /// * **Extending**: every mapping of the old partial last page is
    ///   write-protected (its dirty bits kept), its tail past the old size
    ///   zeroed, and only then the size raised, with faults on that page
    ///   held off meanwhile: bytes a mapping wrote past the old size never
    ///   become file data (Linux's `pagecache_isize_extended`).
    ///
    /// Bytes written through a mapping into the last page past the size
    /// are never written back; they read back through the mapping until
    /// the page leaves the cache or the file is extended over them (then
    /// they are zeroes).
    ///
    /// Holds the invalidate lock exclusively, then the remover lock, for
    /// the whole change.
    ///
    /// # Errors
    /// [`Error::SetSize`] with `EFBIG`, changing nothing, if `bytes` is past
    /// the store's [`max_size`](crate::StoreControl::max_size).
    /// [`Error::SetSize`] if the store refused or failed to change its size
    /// (a store without the method: `EOPNOTSUPP`): nothing has changed. If
    /// a shrink's second cut of the store (after the cache's half) fails,
    /// the page map's size has changed all the same and the store may be
    /// longer than it (a later shrinking `set_size` cuts it).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pagemap::{FramePool, MemStore, PageMap, StoreControl};
    /// let store = Arc::new(MemStore::with_size(10_000));
    /// let map = PageMap::new(Arc::new(FramePool::new(4).unwrap()), store.clone());
    /// map.write_at(0, &[7; 10_000]).unwrap();
    /// map.set_size(5000).unwrap();
    /// assert_eq!((map.size(), map.end()), (5000, 2));
    /// map.set_size(9000).unwrap();
    /// let mut buf = [1u8; 4000];
    /// assert_eq!(map.read_at(5000, &mut buf).unwrap(), 4000);
    /// assert!(buf.iter().all(|&b| b == 0), "the cut bytes do not come back");
    /// assert!(map.writeback(..).errors.is_empty());
    /// assert_eq!(store.size().unwrap(), Some(9000));
    /// ```
    pub fn set_size(&self, bytes: u64) -> Result<RemoveReport, Error> {
        let _invalidate = self.invalidate_lock.write();
        let mut scratch = self.remover.lock();
        let (report, r) = self.resize_with_store(&mut scratch, bytes, crate::map::end_of(bytes));
        r.map_err(|source| Error::SetSize {
            size: bytes,
            source,
        })?;
        Ok(report)
    }

    /// Punches a hole of `len` bytes at byte `offset` (Linux's
    /// `fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)`): afterwards
    /// the range reads as zeroes, through the cache, mappings and the store,
    /// and the file's size is unchanged. The part past the end of the file
    /// is clipped off (it reads as zeroes already).
    ///
    /// One operation does both halves under the invalidate lock, held
    /// exclusively, which keeps every load and fault that misses the cache
    /// out from the first half to the second (their miss path takes it
    /// shared, as Linux's `filemap_fault` does), so none can refill the
    /// cache with the store's old bytes in between:
    /// 1. whole pages: every shared entry of them is zapped, unused pages are
    ///    removed and pages in use zeroed (dirty data dropped), each after a
    ///    write-back of it in flight has reached the store (its WRITEBACK
    ///    bit), and the entries zapped again, as
    ///    [`remove_or_zero`](Self::remove_or_zero) does. Private
    ///    copy-on-write copies of them are **kept**
    ///    ([`Mapper::zap_shared`](crate::Mapper::zap_shared)): a punch
    ///    changes the file, not a process's copy (only truncate discards
    ///    those);
    /// 2. a partial first or last page, if cached, has just the punched
    ///    bytes zeroed, under its page lock, after its write-back in flight;
    ///    it stays mapped and keeps its dirty state;
    /// 3. if the store is shorter than the size (the dirty last page of an
    ///    extending [`write_at`](Self::write_at), which would have extended
    ///    it, may be among those dropped), it is made that long
    ///    ([`StoreControl::set_size`](crate::StoreControl::set_size)); then
    ///    the store punches the range
    ///    ([`StoreControl::punch_hole`](crate::StoreControl::punch_hole)).
    ///
    /// So no old byte comes back: not from a load (kept out), nor from a
    /// write-back (those in flight drained, later ones copy zeroes).
    ///
    /// Must not be called holding
    /// [`invalidate_lock_shared`](Self::invalidate_lock_shared) (it would
    /// wait for itself).
    ///
    /// # Errors
    /// [`Error::Punch`] if the store failed (the cache's half is done;
    /// the store's range is then unspecified, as after a failed
    /// `fallocate`; stores without the method fail with `EOPNOTSUPP`).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pagemap::{FramePool, MemStore, PageMap, PAGE_SIZE};
    ///
    /// let map = PageMap::new(Arc::new(FramePool::new(8).unwrap()), Arc::new(MemStore::new()));
    /// for i in 0..3 {
    ///     map.load(i).unwrap().write(0, &[7u8; PAGE_SIZE]).unwrap();
    /// }
    /// map.punch_hole(100, 2 * PAGE_SIZE as u64).unwrap(); // bytes 100 .. 8292
    /// let mut b = [0u8; PAGE_SIZE];
    /// map.load(0).unwrap().read(0, &mut b).unwrap();
    /// assert_eq!((b[99], b[100]), (7, 0)); // a partial page: just the hole
    /// map.load(2).unwrap().read(0, &mut b).unwrap();
    /// assert_eq!((b[99], b[100]), (0, 7));
    /// ```
    pub fn punch_hole(&self, offset: u64, len: u64) -> Result<RemoveReport, Error> {
        // Loads that miss wait from here until the store has punched too.
        let _invalidate = self.invalidate_lock.write();
        let mut scratch = self.remover.lock();
        // Read under the invalidate lock: a size change, which also takes
        // it exclusively, cannot move the end meanwhile.
        let limit = self.size();
        let end = offset.saturating_add(len).min(limit);
        let mut report = RemoveReport::default();
        if offset >= end {
            return Ok(report);
        }
        let ps = PAGE_SIZE as u64;
        // Whole pages `[first, stop)`; at the end of the file the last page
        // counts as whole (its bytes past the end are zeroes by contract).
        let first = offset.div_ceil(ps);
        let stop = if end >= limit {
            end.div_ceil(ps)
        } else {
            end / ps
        };
        // The partial pages: the head, and a tail on another page.
        let head = offset / ps;
        if !offset.is_multiple_of(ps) {
            let to = (end - head * ps).min(ps) as usize;
            self.zero_partial(head, (offset % ps) as usize, to);
        }
        let tail = end / ps;
        if stop == tail && !end.is_multiple_of(ps) && (tail != head || offset.is_multiple_of(ps)) {
            self.zero_partial(tail, 0, (end % ps) as usize);
        }
        if first < stop {
            report = self.punch_locked(&mut scratch, first, stop - 1);
        }
        // A punch that reaches the end may have dropped the dirty last page
        // of an extending `write_at`, the write-back that would have made
        // the store as long as the size: make it that long now (a store
        // that cannot resize gets it at the next fsync, by a write).
        deferred(self.persist_size_locked()).map_err(|source| Error::Punch {
            offset,
            len: end - offset,
            source,
        })?;
        // Last: the cache can no longer write old bytes of the range back.
        self.store
            .punch_hole(offset, end - offset)
            .map_err(|source| Error::Punch {
                offset,
                len: end - offset,
                source,
            })?;
        Ok(report)
    }

    /// A size change to `bytes` (`end` pages), both halves, the invalidate
    /// and remover locks held. The store's first: a store that cannot
    /// change its size (the default
    /// [`set_size`](crate::StoreControl::set_size)) or fails refuses it
    /// before the cache changes, so nothing changes (else a shrink would
    /// drop the cut pages and a later extension load the store's old bytes
    /// back). A shrink cuts the store again after the cache's half: a
    /// write-back of a cut page in flight (waited for there) may have
    /// extended it past the first cut.
    fn resize_with_store(
        &self,
        scratch: &mut crate::map::Scratch,
        bytes: u64,
        end: u64,
    ) -> (RemoveReport, Result<(), crate::StoreError>) {
        // A size no write-back could store (`u64::MAX`, "no end", included:
        // a file cannot become a device): refused, nothing changed, as
        // `write_at` and `load` refuse such pages (else the map's size would
        // move and the store's fail).
        if bytes > self.max_size {
            return (
                RemoveReport::default(),
                Err(crate::StoreError::new(crate::StoreError::EFBIG)),
            );
        }
        let old = self.size();
        if bytes > old && self.store_cut_failed.load(Ordering::Relaxed) {
            // A shrink's second cut failed: a write-back of a cut page may
            // have left old bytes past the size in the store, which an
            // extension (keeping what the store holds) would make file data
            // again. Cut them first; refuse the extension if that fails.
            if let Err(e) = self.store.set_size(old) {
                return (RemoveReport::default(), Err(e));
            }
            self.store_cut_failed.store(false, Ordering::Relaxed);
        }
        if let Err(e) = self.store.set_size(bytes) {
            return (RemoveReport::default(), Err(e));
        }
        let shrink = bytes < old;
        let report = self.resize_locked(scratch, bytes, end);
        let second = if shrink {
            self.store.set_size(bytes)
        } else {
            Ok(())
        };
        // Relaxed: read and written under the invalidate lock (exclusive).
        self.store_cut_failed
            .store(second.is_err(), Ordering::Relaxed);
        // Even if the second cut failed: the first made the store `bytes`
        // long and write-backs only lengthen it, so `bytes` is a true lower
        // bound, while the old record (a longer, cut length) would make
        // `persist_size` skip an extension a dropped append needs.
        self.store_resized(bytes);
        (report, second)
    }

    /// The cache's half of a size change to `bytes` (`end` pages), the
    /// invalidate and remover locks held.
    fn resize_locked(
        &self,
        scratch: &mut crate::map::Scratch,
        bytes: u64,
        end: u64,
    ) -> RemoveReport {
        let old = self.size();
        let old_end = self.end();
        if bytes > old || (bytes == old && end > old_end) {
            // Extending (`old` is finite: nothing is larger than no end).
            let ext = self.begin_extend(old);
            self.raise_size(&ext, bytes, end);
            return RemoveReport::default();
        }
        // Under the writer lock: an insert checks the end under it too, so
        // no page beyond the new end appears after this.
        self.lower_size(bytes, end);
        let mut report = RemoveReport::default();
        if end < old_end {
            // Zap, remove or zero (waiting for the faults in their window
            // on every page still cached), zap again: an entry a fault
            // installed meanwhile is cleared by the second zap, and a fault
            // after it sees the new end (see `crate::fault`; Linux's
            // `truncate_pagecache`).
            report = self.remove_or_zero_locked(scratch, end, u64::MAX, true);
        }
        self.zero_tail_after_shrink(bytes);
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
        let mut scratch = self.remover.lock();
        let marked = &mut scratch.pages;
        let mut from = first;
        loop {
            marked.clear();
            // The reverse map is read-locked while marking, so no mapping
            // appears between the "mapped?" check and the mark; one added
            // later reaches the page only through a lookup, which unmarks it.
            let resume = {
                let rmap = self.rmap.read();
                let guard = epoch::pin();
                self.walk_present(from, last, &guard, &mut |index, slot| {
                    self.invalidate_one(&rmap, index, slot, marked, &mut report);
                    marked.len() < REMOVE_BATCH
                })
            };
            let mut raced = 0;
            self.yank_marked(marked, false, &mut raced, &mut 0);
            report.raced += raced;
            report.invalidated += marked.len() as u64;
            for &(_, frame) in marked.iter() {
                self.pool.free(frame);
            }
            marked.clear();
            match resume {
                Some(next) => from = next,
                None => return report,
            }
        }
    }

    /// Marks page `index` for [`invalidate`](Self::invalidate) into
    /// `marked` if it is clean, unused, unmapped and idle; counts it in the
    /// report otherwise.
    fn invalidate_one(
        &self,
        rmap: &crate::rmap::ReverseMap,
        index: u64,
        slot: &crate::slot::Slot,
        marked: &mut Vec<(u64, crate::frame::FrameId)>,
        report: &mut InvalidateReport,
    ) {
        if rmap.covers(index) {
            report.mapped += 1;
            return;
        }
        let Ok((_, w)) = slot.update(slot::mark_removal) else {
            if slot.load().refs() != 0 {
                report.referenced += 1;
            }
            return;
        };
        let frame = w.present_frame();
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
    }

    /// Empties the map for good: writes back every dirty page first (unless
    /// `discard`), then frees every page, and makes the store as long as
    /// the size if it is shorter (discarded pages may have been what would
    /// have extended it; a failure is an [`Error::SetSize`] in `errors`).
    ///
    /// # Panics
    /// If a mapping is registered or a page is held: destroying a map in use
    /// is a bug in the caller.
    pub fn destroy(&self, discard: bool) -> DestroyReport {
        let mut scratch = self.remover.lock();
        let mapped = self.nr_mappings();
        assert_eq!(mapped, 0, "destroying a page map with {mapped} mappings");
        let mut report = DestroyReport::default();
        if !discard {
            let wb = self.writeback(..);
            report.written = wb.written;
            report.errors = wb.errors;
            report.errors_dropped = wb.errors_dropped;
        }
        let marked = &mut scratch.pages;
        let mut from = 0;
        loop {
            marked.clear();
            let guard = epoch::pin();
            let resume = self.walk_present(from, u64::MAX, &guard, &mut |index, slot| {
                match slot.update(slot::mark_removal) {
                    Ok((_, w)) => {
                        let frame = w.present_frame();
                        if !discard && self.pool.flags(frame) & flags::DIRTY != 0 {
                            // Its write failed: keep it (no data is lost).
                            self.unmark(index, frame);
                        } else {
                            marked.push((index, frame));
                        }
                    }
                    Err(_) => panic!("destroying a page map whose page {index} is held"),
                }
                marked.len() < REMOVE_BATCH
            });
            drop(guard);
            let mut raced = 0;
            self.yank_marked(marked, discard, &mut raced, &mut report.discarded);
            assert_eq!(raced, 0, "a page was taken while its map was destroyed");
            report.freed += marked.len() as u64;
            for &(_, frame) in marked.iter() {
                self.pool.free(frame);
            }
            marked.clear();
            match resume {
                Some(next) => from = next,
                None => break,
            }
        }
        // Discarded pages may include the dirty last page of an extending
        // `write_at`: the store is made as long as the size (after the
        // remover lock: the invalidate lock comes first).
        drop(scratch);
        let persisted = self.persist_size();
        self.record_persist(persisted, &mut report.errors, &mut report.errors_dropped);
        report
    }

    /// A failed `persist_size` as an [`Error::SetSize`] in a report's
    /// errors (the next fsync tries again).
    fn record_persist(
        &self,
        persisted: Result<(), crate::StoreError>,
        errors: &mut Vec<Error>,
        dropped: &mut u64,
    ) {
        if let Err(source) = deferred(persisted) {
            let size = self.size();
            crate::map::record(errors, dropped, Error::SetSize { size, source });
        }
    }

    /// Starts a removal of `range` that runs one pass per
    /// [`Removal::step`], so that a test, a model or a deterministic fuzzer
    /// can act between the passes. Holds the remover lock until dropped
    /// (dropping it early finishes the remaining passes).
    pub fn begin_remove(&self, range: impl RangeBounds<u64>, batching: Batching) -> Removal<'_> {
        let mut scratch = self.remover.lock();
        let (first, last) = inclusive(&range).unwrap_or((1, 0));
        let steps = Steps::new(
            self,
            first,
            last,
            Policy { batching, ..REMOVE },
            core::mem::take(&mut *scratch),
        );
        Removal { steps, scratch }
    }
}

/// A `persist_size` result with a store's refusal to change its size
/// (`EOPNOTSUPP`, [`StoreControl::set_size`](crate::StoreControl::set_size)'s
/// default) taken as done for now: the next fsync, a flusher's sync or the
/// drop makes the store that long by writing its last page instead (they
/// may load it; a removal under way may not).
fn deferred(r: Result<(), crate::StoreError>) -> Result<(), crate::StoreError> {
    match r {
        Err(e) if e.code() == crate::StoreError::EOPNOTSUPP => Ok(()),
        r => r,
    }
}
