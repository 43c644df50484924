//! Writeback: cleaning the mappings' entries of a range, then writing its
//! dirty pages (tagged first, so that a writer that keeps dirtying cannot
//! make it run forever), each under WRITEBACK.

use alloc::vec::Vec;
use core::ops::RangeBounds;

use crate::error::Error;
use crate::frame::flags;
use crate::mapper::Harvest;
use crate::radix::Mark;
use crate::shootdown::ShootdownBatch;
use crate::slot;
use crate::sync::epoch;

use super::{inclusive, PageMap, PageRef};

/// Past this many page holds (32 bytes each: 128 KiB), a writeback settles
/// them behind a shootdown before it cleans the next mapping: a range whose
/// mappings hand over more dirty entries is settled in several rounds, one
/// shootdown per address space each. One mapping's dirty entries in the
/// range are held at once (its clean is one call), so the bound is this
/// plus the largest mapping's.
pub const HARVEST_CAP: usize = 4096;

/// The most errors a report keeps; more are counted in its
/// `errors_dropped`.
pub const MAX_REPORTED_ERRORS: usize = 64;

/// Keeps `e` in `errors` unless it already holds [`MAX_REPORTED_ERRORS`],
/// else counts it in `dropped`.
pub(crate) fn record(errors: &mut Vec<Error>, dropped: &mut u64, e: Error) {
    if errors.len() < MAX_REPORTED_ERRORS {
        errors.push(e);
    } else {
        *dropped += 1;
    }
}

/// What [`PageMap::writeback`] did.
#[derive(Debug, Default)]
pub struct WritebackReport {
    /// Pages written.
    pub written: u64,
    /// Dirty page table entries harvested (entries, not pages: a page that
    /// two address spaces map dirty counts twice).
    pub harvested: u64,
    /// Shootdowns issued to write-protect mapped pages (one per address space).
    pub shootdowns: u64,
    /// Dirty pages beyond the end of the file, dropped instead of written.
    pub discarded: u64,
    /// Write errors: those pages stay dirty (at most
    /// [`MAX_REPORTED_ERRORS`](crate::MAX_REPORTED_ERRORS) kept).
    pub errors: Vec<Error>,
    /// Errors beyond the first [`MAX_REPORTED_ERRORS`](crate::MAX_REPORTED_ERRORS),
    /// counted but not kept (a failing device must not make a report grow
    /// with the range: those pages stay dirty and are retried all the same).
    pub errors_dropped: u64,
}

impl PageMap {
    /// Writes back the dirty pages in `range` (msync; [`sync`](Self::sync)
    /// for all of them; a [`Flusher`](crate::Flusher) calls it periodically).
    ///
    /// First every mapping of the range write-protects and cleans its page
    /// table entries ([`Mapper::clean`](crate::Mapper::clean)), marking the
    /// pages it found dirty, and one shootdown per address space makes that
    /// stick: a write after it faults or sets a dirty bit again, so it is
    /// never lost. Then the dirty pages are tagged (TOWRITE) and only tagged
    /// pages are written, so a writer that keeps dirtying pages cannot make
    /// this run forever. Each page is cleaned under its page lock and then
    /// written straight from its frame with no lock held, so the store may
    /// see a write made meanwhile, even half of one (no stable pages); such
    /// a write leaves the page dirty, so the next write-back stores it. A
    /// write error leaves the page dirty and is reported.
    pub fn writeback(&self, range: impl RangeBounds<u64>) -> WritebackReport {
        let mut report = WritebackReport::default();
        let Some((first, last)) = inclusive(&range) else {
            return report;
        };
        // One Arc per mapping of the range (a snapshot: the mappers are
        // called with no lock held).
        let mut mappers = Vec::new();
        self.rmap
            .read()
            .for_each_overlapping(first, last, &mut |_, m| {
                mappers.push(m.clone());
                true
            });
        if !mappers.is_empty() {
            let mut batch = ShootdownBatch::new();
            // The mappers hand over the pages they held before taking each
            // dirty bit (the only way to report one: see `Harvest`).
            let mut harvest = Harvest::new(self);
            for m in &mappers {
                // Past HARVEST_CAP holds, the ones so far are settled behind
                // a shootdown before the next mapping is cleaned (below it,
                // the common case, one shootdown per address space for the
                // whole writeback). One mapping's clean is one call: a call
                // per slice of its range would walk a huge, sparse mapping
                // slice by slice (found by the fuzzer: a hang).
                if harvest.len() >= HARVEST_CAP {
                    report.shootdowns += batch.flush().shootdowns;
                    report.harvested += harvest.settle();
                }
                let (mf, ml) = m.file_pages();
                m.clean(first.max(mf), last.min(ml), &mut batch, &mut harvest);
            }
            report.shootdowns += batch.flush().shootdowns;
            // Only now: no CPU writes through the old entries any more.
            report.harvested += harvest.settle();
        }
        self.tag_towrite(first, last);
        let mut from = first;
        loop {
            let next = {
                let guard = epoch::pin();
                self.tree
                    .next_marked(from, Mark::ToWrite, &guard)
                    .map(|(i, _)| i)
            };
            let Some(index) = next.filter(|&i| i <= last) else {
                break;
            };
            // From the reserve: a user at the refcount limit must not keep
            // this page from being written.
            match self.get(index, slot::get_reserved) {
                Ok(Some(page)) => {
                    self.clear_mark(index, Mark::ToWrite);
                    match self.write_one(&page) {
                        Ok(Wrote::Written) => report.written += 1,
                        Ok(Wrote::Discarded) => report.discarded += 1,
                        Ok(Wrote::Clean) => {}
                        Err(e) => record(&mut report.errors, &mut report.errors_dropped, e),
                    }
                }
                Ok(None) => self.clear_mark_if_present(index, Mark::ToWrite), // removed
                Err(e) => panic!("the reserve of short holds is exhausted: {e}"),
            }
            match index.checked_add(1) {
                Some(n) => from = n,
                None => break,
            }
        }
        report
    }

    /// Writes back every dirty page.
    pub fn sync(&self) -> WritebackReport {
        self.writeback(..)
    }

    fn tag_towrite(&self, first: u64, last: u64) {
        let g = self.tree.lock();
        let guard = epoch::pin();
        let mut from = first;
        while let Some((i, _)) = self.tree.next_marked(from, Mark::Dirty, &guard) {
            if i > last {
                break;
            }
            self.tree.set_mark(i, Mark::ToWrite, &g);
            match i.checked_add(1) {
                Some(n) => from = n,
                None => break,
            }
        }
    }

    fn clear_mark(&self, index: u64, mark: Mark) {
        let g = self.tree.lock();
        self.tree.clear_mark(index, mark, &g);
    }

    fn clear_mark_if_present(&self, index: u64, mark: Mark) {
        let g = self.tree.lock();
        let guard = epoch::pin();
        if self
            .tree
            .lookup(index, &guard)
            .is_some_and(|s| s.load().is_present())
        {
            self.tree.clear_mark(index, mark, &g);
        }
    }

    /// Writes one page if dirty (beyond the end of the file, drops its data
    /// instead: a truncate discarded it).
    ///
    /// WRITEBACK is held from the snapshot until the store has the bytes, so
    /// two write-backs of one page never overlap: otherwise an older snapshot
    /// could reach the store after a newer one and leave stale bytes behind a
    /// clean page (caught by the stress test; Linux waits on PG_writeback).
    pub(crate) fn write_one(&self, page: &PageRef<'_>) -> Result<Wrote, Error> {
        let frame = page.frame;
        self.pool.lock_bit(frame, flags::WRITEBACK);
        self.pool.lock(frame);
        // A detached page (a truncate cut it off after we took it) was
        // cleaned by the truncate and can never be dirtied again.
        if self.pool.flags(frame) & flags::DIRTY == 0 {
            self.pool.unlock(frame);
            self.pool.unlock_bit(frame, flags::WRITEBACK);
            return Ok(Wrote::Clean);
        }
        if self.is_beyond_end(page.index) {
            // Never extend the file with a page a truncate cut off.
            self.pool.clear_flags(frame, flags::DIRTY);
            self.pool.unlock(frame);
            self.pool.unlock_bit(frame, flags::WRITEBACK);
            self.sync_dirty_mark(page.index, frame);
            return Ok(Wrote::Discarded);
        }
        // Clean under the page lock, then write the frame itself (no bounce
        // buffer): a write after the clean, by a writer or a CPU through a
        // mapping, dirties the page again, so a torn image the store may
        // take is written again later and nothing is lost (Linux without
        // stable pages; `crate::frame`'s contents module). Writers do not
        // wait for WRITEBACK.
        //
        // The length is read under the page lock: a size change that
        // concerns this page (a shrink cutting into it, an extending write
        // into it) takes the same lock, so we write the bytes the page held
        // when it was cleaned, up to the size they were written under; a
        // shrink waits for our WRITEBACK before it cuts the store. Bytes
        // past the size (a mapping may write there) are not file data and
        // are left out, as on Linux.
        let len = self.valid_bytes(page.index);
        self.pool.clear_flags(frame, flags::DIRTY);
        self.pool.unlock(frame);
        let result = self.store.write(&self.pool, frame, page.index, len);
        if result.is_err() {
            // Keep the data: the page is dirty again (Akaros lost it: defect 7).
            self.pool.set_flags(frame, flags::DIRTY);
        }
        self.pool.unlock_bit(frame, flags::WRITEBACK);
        self.sync_dirty_mark(page.index, frame);
        result
            .map(|()| Wrote::Written)
            .map_err(|source| Error::Write {
                index: page.index,
                source,
            })
    }
}

/// What [`PageMap::write_one`] did with a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wrote {
    /// It was clean: nothing to do.
    Clean,
    /// Written to the store.
    Written,
    /// Beyond the end of the file: its data dropped.
    Discarded,
}
