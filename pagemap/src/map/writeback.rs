//! Writeback: cleaning the mappings' entries of a range, then writing its
//! dirty pages (tagged first, so that a writer that keeps dirtying cannot
//! make it run forever), each under WRITEBACK.

use alloc::vec::Vec;
use core::ops::RangeBounds;

use crate::error::Error;
use crate::frame::{flags, FrameId};
use crate::mapper::Harvest;
use crate::radix::Mark;
use crate::shootdown::ShootdownBatch;
use crate::slot;
use crate::store::MAX_EXTENT;
use crate::sync::epoch;
use crate::PAGE_SIZE;

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
    /// this run forever. Contiguous dirty pages are written together, as an
    /// extent of up to [`MAX_EXTENT`] pages in one
    /// [`write_pages`](crate::BackingStore::write_pages) (one `pwritev` for
    /// a [`FileStore`](crate::FileStore)). Each page is cleaned under its
    /// page lock and then written straight from its frame with no lock
    /// held but its WRITEBACK bit, so the store may
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
        // Extents, each in two steps, so that no page bit is held while the
        // writer lock is taken (the crate's lock order): first up to
        // MAX_EXTENT contiguous tagged pages are held and untagged (writer
        // lock, no bit); then each is begun (its WRITEBACK kept across the
        // I/O) and the ready ones written together. Three small buffers for
        // the whole call, nothing per page.
        let mut held: Vec<PageRef<'_>> = Vec::with_capacity(MAX_EXTENT);
        let mut run: Vec<(PageRef<'_>, usize)> = Vec::with_capacity(MAX_EXTENT);
        let mut frames: Vec<(FrameId, usize)> = Vec::with_capacity(MAX_EXTENT);
        let mut from = Some(first);
        while let Some(start) = from {
            self.hold_extent(start, last, &mut held, &mut from);
            for page in held.drain(..) {
                // Never wait for a page's locks while holding the run's
                // WRITEBACK bits: write the run first, then wait.
                let mut begun = self.begin_write(&page, run.is_empty());
                if begun == Begun::WouldBlock {
                    self.write_run(&mut run, &mut frames, &mut report);
                    begun = self.begin_write(&page, true);
                }
                match begun {
                    // Only a file's last page is short, and nothing may
                    // follow it in an extent (the store would leave a
                    // hole): a short page ends the run.
                    Begun::Ready(len) if len < PAGE_SIZE => {
                        run.push((page, len));
                        self.write_run(&mut run, &mut frames, &mut report);
                    }
                    Begun::Ready(len) => run.push((page, len)),
                    // A gap: the run so far is written first (its bits
                    // dropped before the dirty mark's writer lock).
                    Begun::Discarded => {
                        self.write_run(&mut run, &mut frames, &mut report);
                        self.sync_dirty_mark(page.index, page.frame);
                        report.discarded += 1;
                    }
                    Begun::Clean | Begun::WouldBlock => {
                        self.write_run(&mut run, &mut frames, &mut report)
                    }
                }
            }
            self.write_run(&mut run, &mut frames, &mut report);
        }
        report
    }

    /// Holds and untags the next contiguous tagged pages from `start` up to
    /// `last`, at most [`MAX_EXTENT`], into `held`, stopping at a gap; sets
    /// `from` to where the next extent's search starts (`None`: done).
    fn hold_extent<'a>(
        &'a self,
        start: u64,
        last: u64,
        held: &mut Vec<PageRef<'a>>,
        from: &mut Option<u64>,
    ) {
        *from = Some(start);
        while let Some(at) = *from {
            if held.len() == MAX_EXTENT {
                return;
            }
            let next = {
                let guard = epoch::pin();
                self.tree
                    .next_marked(at, Mark::ToWrite, &guard)
                    .map(|(i, _)| i)
            };
            let Some(index) = next.filter(|&i| i <= last) else {
                *from = None;
                return;
            };
            if held.last().is_some_and(|p| p.index + 1 != index) {
                return; // a gap: the next extent starts there
            }
            *from = index.checked_add(1);
            // From the reserve: a user at the refcount limit must not keep
            // this page from being written.
            match self.get(index, slot::get_reserved) {
                Ok(Some(page)) => {
                    self.clear_mark(index, Mark::ToWrite);
                    held.push(page);
                }
                Ok(None) => {
                    self.clear_mark_if_present(index, Mark::ToWrite); // removed
                    return;
                }
                Err(e) => panic!("the reserve of short holds is exhausted: {e}"),
            }
        }
    }

    /// Writes the extent `run` (contiguous pages begun by `begin_write`)
    /// with one [`write_pages`](crate::BackingStore::write_pages) and ends
    /// each page's write; `frames` is scratch space. If the extent fails,
    /// its pages are written again one by one (still under WRITEBACK), so
    /// that only the pages the store cannot take stay dirty, each reported
    /// with its own error, as when every page was written alone.
    fn write_run<'a>(
        &'a self,
        run: &mut Vec<(PageRef<'a>, usize)>,
        frames: &mut Vec<(FrameId, usize)>,
        report: &mut WritebackReport,
    ) {
        let Some(first) = run.first().map(|(p, _)| p.index) else {
            return;
        };
        frames.clear();
        frames.extend(run.iter().map(|(p, len)| (p.frame, *len)));
        let result = self.store.write_extent(&self.pool, first, frames);
        for (page, len) in run.iter() {
            let r = match result {
                Ok(()) => Ok(()),
                Err(e) if frames.len() == 1 => Err(e),
                Err(_) => self.store.write(&self.pool, page.frame, page.index, *len),
            };
            self.end_write_bits(page, r.is_ok());
            match r {
                Ok(()) => report.written += 1,
                Err(source) => record(
                    &mut report.errors,
                    &mut report.errors_dropped,
                    Error::Write {
                        index: page.index,
                        source,
                    },
                ),
            }
        }
        // Every bit of the run dropped: now the dirty marks (writer lock).
        for (page, _) in run.drain(..) {
            self.sync_dirty_mark(page.index, page.frame);
        }
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
        let len = match self.begin_write(page, true) {
            Begun::Clean | Begun::WouldBlock => return Ok(Wrote::Clean),
            Begun::Discarded => {
                self.sync_dirty_mark(page.index, page.frame);
                return Ok(Wrote::Discarded);
            }
            Begun::Ready(len) => len,
        };
        let result = self.store.write(&self.pool, page.frame, page.index, len);
        self.end_write_bits(page, result.is_ok());
        self.sync_dirty_mark(page.index, page.frame);
        result
            .map(|()| Wrote::Written)
            .map_err(|source| Error::Write {
                index: page.index,
                source,
            })
    }

    /// The first half of a page's write: takes WRITEBACK and the page lock
    /// (`may_block`: waiting for them; else `WouldBlock` if either is
    /// taken, holding neither), and if the page is dirty cleans it and
    /// drops the page lock, keeping WRITEBACK for the I/O (`Ready`; then
    /// [`end_write_bits`](Self::end_write_bits) must follow). A clean page,
    /// or a dirty one beyond the end of the file (its data dropped; the
    /// caller syncs its dirty mark), holds nothing afterwards.
    fn begin_write(&self, page: &PageRef<'_>, may_block: bool) -> Begun {
        let frame = page.frame;
        if may_block {
            self.pool.lock_bit(frame, flags::WRITEBACK);
            self.pool.lock(frame);
        } else {
            if !self.pool.try_lock_bit(frame, flags::WRITEBACK) {
                return Begun::WouldBlock;
            }
            if !self.pool.try_lock(frame) {
                self.pool.unlock_bit(frame, flags::WRITEBACK);
                return Begun::WouldBlock;
            }
        }
        if self.pool.flags(frame) & flags::DIRTY == 0 {
            self.pool.unlock(frame);
            self.pool.unlock_bit(frame, flags::WRITEBACK);
            return Begun::Clean;
        }
        if self.is_beyond_end(page.index) {
            // Never extend the file with a page a truncate cut off. (The
            // caller syncs the dirty mark, with no page bit held.)
            self.pool.clear_flags(frame, flags::DIRTY);
            self.pool.unlock(frame);
            self.pool.unlock_bit(frame, flags::WRITEBACK);
            return Begun::Discarded;
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
        Begun::Ready(len)
    }

    /// The second half of a `Ready` page's write, once the store is done:
    /// a failed write leaves the page dirty; drops WRITEBACK. The caller
    /// then syncs the dirty mark (`sync_dirty_mark`), once it holds no page
    /// bit.
    fn end_write_bits(&self, page: &PageRef<'_>, ok: bool) {
        let frame = page.frame;
        if !ok {
            // Keep the data: the page is dirty again (Akaros lost it: defect 7).
            self.pool.set_flags(frame, flags::DIRTY);
        }
        self.pool.unlock_bit(frame, flags::WRITEBACK);
    }
}

/// What [`PageMap::begin_write`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Begun {
    /// Clean: nothing held, nothing to write.
    Clean,
    /// Beyond the end of the file: its data dropped, nothing held.
    Discarded,
    /// Cleaned, WRITEBACK held: write its first `.0` bytes (the part
    /// below the size), then `end_write_bits`.
    Ready(usize),
    /// A lock was taken and the caller would not wait: nothing held.
    WouldBlock,
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
