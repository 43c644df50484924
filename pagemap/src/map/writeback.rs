//! Writeback: cleaning the mappings' entries of a range, then writing its
//! dirty pages (tagged first, so that a writer that keeps dirtying cannot
//! make it run forever), each under WRITEBACK.

use alloc::vec::Vec;
use core::fmt;
use core::ops::RangeBounds;

use crate::error::{Error, StoreError};
use crate::frame::{flags, FrameId};
use crate::mapper::Harvest;
use crate::radix::Mark;
use crate::shootdown::ShootdownBatch;
use crate::slot;
use crate::store::MAX_EXTENT;
use crate::sync::epoch;
use crate::sync::Ordering;
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

/// How a writeback treats each page: which to write this time, and what
/// writing one did. The plain writeback's ([`All`]) wants every page and
/// ignores outcomes, its methods inlined to nothing; a
/// [`Flusher`](crate::Flusher)'s skips pages waiting out a backoff.
pub(crate) trait WbPolicy {
    /// Whether to write dirty page `index` this time. Asked while tagging,
    /// under the writer lock: it must take no lock.
    #[inline]
    fn want(&mut self, _index: u64) -> bool {
        true
    }

    /// What writing page `index` did.
    #[inline]
    fn done(&mut self, _index: u64, _result: &Result<Wrote, Error>) {}

    /// Whether a write error is also kept for the next
    /// [`fsync`](PageMap::fsync) (see [`WriteErrors`]): yes,
    /// but for close and drop, which own the map (no concurrent fsync) and
    /// report every failed page themselves.
    #[inline]
    fn keep_errors(&self) -> bool {
        true
    }
}

/// Every page, outcomes ignored: [`PageMap::writeback`].
pub(crate) struct All;

impl WbPolicy for All {}

/// What an [`fsync`](PageMap::fsync) that failed saw. The pages it could
/// not write stay dirty and cached, and are retried by later write-backs;
/// an fsync that then succeeds covers them.
#[derive(Debug)]
pub struct FsyncError {
    /// The write-back this fsync ran: its `errors` are the pages it could
    /// not write.
    pub report: WritebackReport,
    /// The latest write error met by another write-back (a
    /// [`Flusher`](crate::Flusher)'s round, an msync, a removal's
    /// write-back, a concurrent fsync), or a failed store sync of a
    /// flusher's round ([`Error::Sync`]), after this fsync began, or before it
    /// but not yet reported by an fsync: kept so that it is not swallowed
    /// (Linux's `errseq_t`). Its page may have been written since (a later
    /// attempt succeeding): it still says a write failed.
    pub earlier: Option<Error>,
    /// The store's [`sync`](crate::StoreControl::sync) failed (what it had
    /// acknowledged may not survive a crash), or its
    /// [`set_size`](crate::StoreControl::set_size) did, called first when
    /// the store is shorter than [`size`](PageMap::size) (the pages that
    /// would have extended it left the cache unwritten: punched, zeroed or
    /// discarded).
    pub sync: Option<StoreError>,
}

impl FsyncError {
    /// `Ok` with the report if nothing failed.
    fn into_result(self) -> Result<WritebackReport, FsyncError> {
        let r = &self.report;
        if r.errors.is_empty()
            && r.errors_dropped == 0
            && self.earlier.is_none()
            && self.sync.is_none()
        {
            Ok(self.report)
        } else {
            Err(self)
        }
    }

    /// The first error: this fsync's first page, else the earlier write
    /// error, else the store's sync ([`Error::Sync`]).
    ///
    /// # Panics
    /// If it holds no error (never for one an fsync returned).
    pub fn error(&self) -> Error {
        match (self.report.errors.first(), &self.earlier, self.sync) {
            (Some(e), _, _) | (None, Some(e), _) => e.clone(),
            (None, None, Some(source)) => Error::Sync { source },
            // Not built without an error (see `PageMap::fsync`).
            (None, None, None) => unreachable!("an FsyncError without an error"),
        }
    }
}

impl fmt::Display for FsyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pages = self.report.errors.len() as u64 + self.report.errors_dropped;
        write!(f, "fsync failed: {}", self.error())?;
        if pages > 1 {
            write!(f, " ({pages} pages not written)")?;
        }
        Ok(())
    }
}

impl core::error::Error for FsyncError {}

impl From<FsyncError> for Error {
    /// [`FsyncError::error`]: for `?` in functions returning [`Error`].
    fn from(e: FsyncError) -> Self {
        e.error()
    }
}

impl PageMap {
    /// Writes back the dirty pages in `range` and waits for them, with no
    /// sync of the store (Linux's `filemap_write_and_wait_range`; msync;
    /// [`fsync`](Self::fsync) makes them durable; a
    /// [`Flusher`](crate::Flusher) calls this periodically).
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
    /// write error leaves the page dirty and is reported, here and by the
    /// next [`fsync`](Self::fsync).
    pub fn writeback(&self, range: impl RangeBounds<u64>) -> WritebackReport {
        self.writeback_with(range, &mut All)
    }

    /// [`writeback`](Self::writeback), writing only the pages `policy`
    /// wants and telling it what became of each.
    pub(crate) fn writeback_with(
        &self,
        range: impl RangeBounds<u64>,
        policy: &mut impl WbPolicy,
    ) -> WritebackReport {
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
        self.tag_towrite(first, last, policy);
        let keep = policy.keep_errors();
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
                let mut begun = self.begin_write(&page, run.is_empty(), true);
                if begun == Begun::WouldBlock {
                    self.write_run(&mut run, &mut frames, &mut report, policy, keep);
                    begun = self.begin_write(&page, true, true);
                }
                match begun {
                    // Only a file's last page is short, and nothing may
                    // follow it in an extent (the store would leave a
                    // hole): a short page ends the run.
                    Begun::Ready(len) if len < PAGE_SIZE => {
                        run.push((page, len));
                        self.write_run(&mut run, &mut frames, &mut report, policy, keep);
                    }
                    Begun::Ready(len) => run.push((page, len)),
                    // A gap: the run so far is written first (its bits
                    // dropped before the dirty mark's writer lock).
                    Begun::Discarded => {
                        self.write_run(&mut run, &mut frames, &mut report, policy, keep);
                        self.sync_dirty_mark(page.index, page.frame);
                        policy.done(page.index, &Ok(Wrote::Discarded));
                        report.discarded += 1;
                    }
                    Begun::Clean | Begun::WouldBlock => {
                        policy.done(page.index, &Ok(Wrote::Clean));
                        self.write_run(&mut run, &mut frames, &mut report, policy, keep)
                    }
                }
            }
            self.write_run(&mut run, &mut frames, &mut report, policy, keep);
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
                // Its TOWRITE tag is cleared in `begin_write`, under
                // WRITEBACK (see there).
                Ok(Some(page)) => held.push(page),
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
        policy: &mut impl WbPolicy,
        keep: bool,
    ) {
        let Some(first) = run.first().map(|(p, _)| p.index) else {
            return;
        };
        frames.clear();
        frames.extend(run.iter().map(|(p, len)| (p.frame, *len)));
        self.stats.add(crate::frame::map_ctr::WRITES, 1);
        let result = self.store.write_extent(&self.pool, first, frames);
        for (page, len) in run.iter() {
            let r = match result {
                Ok(()) => Ok(()),
                Err(e) if frames.len() == 1 => Err(e),
                Err(_) => {
                    self.stats.add(crate::frame::map_ctr::WRITES, 1);
                    self.store.write(&self.pool, page.frame, page.index, *len)
                }
            };
            if r.is_ok() {
                self.store_reached(page.index, *len);
            }
            let r = r.map(|()| Wrote::Written).map_err(|source| Error::Write {
                index: page.index,
                source,
            });
            if let (Err(e), true) = (&r, keep) {
                // For the next fsync (Linux's mapping_set_error); before
                // WRITEBACK is released, so an fsync that waited for this
                // write also finds it.
                self.write_error.lock().keep(e);
            }
            self.end_write_bits(page, r.is_ok());
            policy.done(page.index, &r);
            match r {
                Ok(_) => report.written += 1,
                Err(e) => record(&mut report.errors, &mut report.errors_dropped, e),
            }
        }
        // Every bit of the run dropped: now the dirty marks (writer lock).
        for (page, _) in run.drain(..) {
            self.sync_dirty_mark(page.index, page.frame);
        }
    }

    /// Writes back every dirty page, then syncs the store
    /// ([`StoreControl::sync`](crate::StoreControl::sync): `fdatasync` for
    /// a [`FileStore`](crate::FileStore)), so that every write made before
    /// the call survives a crash (Linux's `vfs_fsync`). It fails if a page
    /// could not be written, if the store's sync failed, or if a write-back
    /// since the previous fsync met a write error (a
    /// [`Flusher`](crate::Flusher)'s round, an msync: see
    /// [`FsyncError::earlier`]), which is reported once, by this call.
    ///
    /// The store is synced even when pages failed (as Linux does): what
    /// was written is made durable, and the failures reported.
    ///
    /// | call | writes dirty pages | waits for other write-backs in flight | syncs the store | write errors |
    /// | --- | --- | --- | --- | --- |
    /// | [`writeback(range)`](Self::writeback) (msync) | in `range` | only of pages it writes | no | in its report, and kept for the next fsync |
    /// | `fsync()` | all | all | yes | its own and those kept since the last fsync, each once |
    /// | [`close()`](Self::close) | all | all | yes | every lost page, and those kept; then frees every frame |
    /// | drop | all (best effort) | only of pages it writes | no | every lost page logged (`log::error!`) |
    /// | a [`Flusher`](crate::Flusher) round | all, but pages in backoff | only of pages it writes | if set to | in its report, and kept for the next fsync |
    ///
    /// A write-back in flight when this starts (another thread's, a
    /// flusher's, a removal's) is waited for before the store is synced
    /// (Linux's `filemap_fdatawait_range`): its page keeps the DIRTY mark
    /// until the store returns, so after its own write-back this call waits
    /// on the WRITEBACK bit of every page still marked dirty. The other
    /// write-back may have taken this call's TOWRITE tag of the page (the
    /// tag is shared), so without the wait the sync could run before that
    /// write reached the store (the loom model `pagemap::fsync` found it).
    /// If that write failed, its error is kept before WRITEBACK is released,
    /// and this call reports it.
    ///
    /// Before the store's sync, if the store is shorter than the size (the
    /// pages that would have extended it left the cache unwritten), it is
    /// made that long ([`StoreControl::set_size`](crate::StoreControl::set_size);
    /// a failure is reported as [`FsyncError::sync`]). That step takes the
    /// invalidate lock shared for a moment: do not call this holding
    /// [`invalidate_lock_shared`](Self::invalidate_lock_shared).
    pub fn fsync(&self) -> Result<WritebackReport, FsyncError> {
        let mut own = Own::default();
        let mut e = self.fsync_with(&mut own);
        // This call's own last error was kept too (a concurrent fsync that
        // waited for that write must see it); it is in the report already.
        if e.earlier.is_some() && e.earlier == own.last {
            e.earlier = None;
        }
        e.into_result()
    }

    /// [`fsync`](Self::fsync) with `policy`'s write-back (close keeps every
    /// failed page), as an [`FsyncError`] that may hold no error.
    pub(crate) fn fsync_with(&self, policy: &mut impl WbPolicy) -> FsyncError {
        // Before tagging: an error kept from here on may concern a page
        // this call counts on (another write-back, a concurrent fsync, may
        // take its tag and fail), so it is this call's to report even if a
        // concurrent fsync reports it too.
        let since = self.write_error.lock().seq;
        let report = self.writeback_with(.., policy);
        self.wait_writebacks();
        let sync = self
            .persist_size_or_write()
            .and_then(|()| self.store.sync())
            .err();
        // After the wait and the sync: the errors of the write-backs waited
        // for are kept by now.
        let earlier = self.write_error.lock().check(since);
        FsyncError {
            report,
            earlier,
            sync,
        }
    }

    /// Waits for every write-back in flight (Linux's
    /// `filemap_fdatawait_range`). A page under write-back keeps its DIRTY
    /// mark until after WRITEBACK is released (the mark is synced last), so
    /// the pages still marked dirty cover every write in flight; each is
    /// visited once, so a writer that keeps dirtying cannot keep this going.
    fn wait_writebacks(&self) {
        let mut from = 0;
        loop {
            let next = {
                let guard = epoch::pin();
                self.tree
                    .next_marked(from, Mark::Dirty, &guard)
                    .map(|(i, _)| i)
            };
            let Some(index) = next else {
                break;
            };
            // Held (from the reserve, as writeback does), so the frame
            // waited on is this page's.
            match self.get(index, slot::get_reserved) {
                // Acquire inside the wait: pairs with the write-back's
                // Release unlock of WRITEBACK, so its kept error (stored
                // before that unlock) is seen by `WriteErrors::check`.
                Ok(Some(page)) => self.pool.wait_bit_clear(page.frame, flags::WRITEBACK),
                Ok(None) => {} // removed: its write-back, if any, is over
                Err(e) => panic!("the reserve of short holds is exhausted: {e}"),
            }
            match index.checked_add(1) {
                Some(n) => from = n,
                None => break,
            }
        }
    }

    /// The store accepted `len` bytes of page `index`: it is at least that
    /// long now. Before the page's WRITEBACK bit is released, so a size
    /// change or an fsync that waited for this write sees it.
    fn store_reached(&self, index: u64, len: usize) {
        let end = index
            .saturating_mul(crate::PAGE_SIZE as u64)
            .saturating_add(len as u64);
        // Release: pairs with `persist_size`'s Acquire load (it also waits
        // for WRITEBACK bits, which order this anyway); a hint otherwise.
        self.store_size.fetch_max(end, Ordering::Release);
    }

    /// The store's `set_size(bytes)` succeeded (called under the
    /// invalidate lock, exclusively, or shared from `persist_size`).
    pub(crate) fn store_resized(&self, bytes: u64) {
        self.store_size.store(bytes, Ordering::Release);
    }

    /// Makes the store as long as the size if it is shorter: an extending
    /// `write_at` leaves the store's length to the write-back of its last
    /// page, and that page may have left the cache unwritten (punched,
    /// removed or zeroed, discarded), so without this an fsync would leave
    /// the file short of `size()` (Linux's fsync writes `i_size` with the
    /// inode). Holds the invalidate lock shared, so the size cannot change
    /// meanwhile, nor a write-back reach past it.
    pub(crate) fn persist_size(&self) -> Result<(), StoreError> {
        let _invalidate = self.invalidate_lock.read();
        self.persist_size_locked()
    }

    /// [`persist_size`](Self::persist_size) for a caller holding the
    /// invalidate lock (either way): the paths that drop dirty pages
    /// unwritten (punch, remove-or-zero) call it, so that a map with no
    /// dirty page always has a store as long as its size.
    pub(crate) fn persist_size_locked(&self) -> Result<(), StoreError> {
        let size = self.size();
        // Acquire: pairs with `store_reached`'s Release.
        if size != u64::MAX && self.store_size.load(Ordering::Acquire) < size {
            self.store.set_size(size)?;
            self.store_size.fetch_max(size, Ordering::Release);
        }
        Ok(())
    }

    /// [`persist_size`](Self::persist_size), and for a store that cannot
    /// change its size ([`StoreControl::set_size`](crate::StoreControl::set_size)
    /// refused with `EOPNOTSUPP`, the default) the same effect through a
    /// write: the last page is loaded (the store's bytes, zeroes past its
    /// end), marked dirty and written back, and its write reaches the size
    /// as `pwrite` past the end does. Used where no removal is under way
    /// (fsync, a flusher's sync, drop): a load there cannot bring back
    /// bytes a punch or truncate is cutting.
    pub(crate) fn persist_size_or_write(&self) -> Result<(), StoreError> {
        let last = {
            let _invalidate = self.invalidate_lock.read();
            match self.persist_size_locked() {
                Err(e) if e.code() == StoreError::EOPNOTSUPP => {}
                r => return r,
            }
            // `store_size < size`, so the size is finite and above 0.
            let last = (self.size() - 1) / crate::PAGE_SIZE as u64;
            // The invalidate lock is ours (shared): the miss must not take
            // it again.
            let page = self.load_with(last, true, false).map_err(|e| match e {
                Error::Read { source, .. } => source,
                _ => StoreError::new(StoreError::ENOMEM),
            })?;
            page.mark_dirty();
            last
        };
        match self.writeback(last..=last).errors.into_iter().next() {
            None => Ok(()),
            Some(Error::Write { source, .. }) => Err(source),
            Some(_) => Err(StoreError::new(StoreError::EIO)),
        }
    }

    /// The store's sync alone (a [`Flusher`](crate::Flusher) round's end:
    /// it leaves the kept write error to the map's next fsync). A failure
    /// is kept too, as a write error is, for the map's next fsync to
    /// report: a failed `fdatasync` may have dropped the data it failed to
    /// write (Linux marks those pages clean), so a later sync that succeeds
    /// proves nothing about them.
    #[cfg(all(feature = "std", not(pagemap_loom)))]
    pub(crate) fn sync_store(&self) -> Result<(), StoreError> {
        let r = self
            .persist_size_or_write()
            .and_then(|()| self.store.sync());
        if let Err(source) = r {
            self.write_error.lock().keep(&Error::Sync { source });
        }
        r
    }

    fn tag_towrite(&self, first: u64, last: u64, policy: &mut impl WbPolicy) {
        let g = self.tree.lock();
        let guard = epoch::pin();
        let mut from = first;
        while let Some((i, _)) = self.tree.next_marked(from, Mark::Dirty, &guard) {
            if i > last {
                break;
            }
            if policy.want(i) {
                self.tree.set_mark(i, Mark::ToWrite, &g);
            }
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
        let len = match self.begin_write(page, true, false) {
            Begun::Clean | Begun::WouldBlock => return Ok(Wrote::Clean),
            Begun::Discarded => {
                self.sync_dirty_mark(page.index, page.frame);
                return Ok(Wrote::Discarded);
            }
            Begun::Ready(len) => len,
        };
        self.stats.add(crate::frame::map_ctr::WRITES, 1);
        let result = self
            .store
            .write(&self.pool, page.frame, page.index, len)
            .map(|()| Wrote::Written)
            .map_err(|source| Error::Write {
                index: page.index,
                source,
            });
        if let Err(e) = &result {
            // Kept for the next fsync, before WRITEBACK is released.
            self.write_error.lock().keep(e);
        }
        self.end_write_bits(page, result.is_ok());
        self.sync_dirty_mark(page.index, page.frame);
        result
    }

    /// The first half of a page's write: takes WRITEBACK and the page lock
    /// (`may_block`: waiting for them; else `WouldBlock` if either is
    /// taken, holding neither), and if the page is dirty cleans it and
    /// drops the page lock, keeping WRITEBACK for the I/O (`Ready`; then
    /// [`end_write_bits`](Self::end_write_bits) must follow). A clean page,
    /// or a dirty one beyond the end of the file (its data dropped; the
    /// caller syncs its dirty mark), holds nothing afterwards. `untag`:
    /// clear the page's TOWRITE tag (a writeback's loop) while WRITEBACK is
    /// held, as Linux clears it when the page's writeback starts: the tag
    /// is shared by concurrent writebacks, and one that cleared another's
    /// tag before holding WRITEBACK would leave a window where the page is
    /// dirty, untagged and not under write-back, which an fsync would
    /// neither write nor wait for (the loom model `pagemap::fsync` found
    /// it). Taking the writer lock under WRITEBACK bits is deadlock-free:
    /// nothing waits for a page bit while holding the writer lock (a leaf).
    fn begin_write(&self, page: &PageRef<'_>, may_block: bool, untag: bool) -> Begun {
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
        // The tag goes once the page lock is dropped and before WRITEBACK
        // is: under WRITEBACK alone, the one page bit the writer lock may be
        // taken under.
        // A detached page (a truncate cut it off after we took it) was
        // cleaned by the truncate and can never be dirtied again; its index
        // may hold another page by now, whose tag is not ours to clear (a
        // truncate detaches under WRITEBACK, which we hold: this check
        // stays true).
        let untag = || {
            if untag && self.pool.flags(frame) & flags::DETACHED == 0 {
                self.clear_mark(page.index, Mark::ToWrite);
            }
        };
        if self.pool.flags(frame) & flags::DIRTY == 0 {
            self.pool.unlock(frame);
            untag();
            self.pool.unlock_bit(frame, flags::WRITEBACK);
            return Begun::Clean;
        }
        if self.is_beyond_end(page.index) {
            // Never extend the file with a page a truncate cut off. (The
            // caller syncs the dirty mark, with no page bit held.)
            self.pool.clear_flags(frame, flags::DIRTY);
            self.pool.unlock(frame);
            untag();
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
        untag();
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

/// An fsync's own write-back: remembers its last error, which the fsync
/// reports in its report and so not again as an earlier one. Its errors
/// are kept like any write-back's: a concurrent fsync may have waited for
/// that very write (its TOWRITE tag taken), and must report it.
#[derive(Default)]
struct Own {
    last: Option<Error>,
}

impl WbPolicy for Own {
    fn done(&mut self, _index: u64, result: &Result<Wrote, Error>) {
        if let Err(e) = result {
            self.last = Some(e.clone());
        }
    }
}

/// The write errors kept for fsync (Linux's `errseq_t` in
/// `address_space.wb_err`): a count of errors kept, the latest, and how
/// many of them some fsync has reported.
#[derive(Debug, Default)]
pub(crate) struct WriteErrors {
    /// Errors kept so far.
    seq: u64,
    /// The latest.
    last: Option<Error>,
    /// `seq` when an fsync last reported.
    reported: u64,
}

impl WriteErrors {
    /// Keeps a write error.
    fn keep(&mut self, e: &Error) {
        self.seq += 1;
        self.last = Some(e.clone());
    }

    /// For an fsync that sampled `seq` as `since` when it began: the latest
    /// error if one was kept after that or was never reported; every error
    /// so far counts as reported from now on.
    fn check(&mut self, since: u64) -> Option<Error> {
        let from = since.min(self.reported);
        self.reported = self.seq;
        if self.seq > from {
            self.last.clone()
        } else {
            None
        }
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
