//! The page map: one file's (or block device's) cached pages.

use std::fmt::{self, Write as _};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use crate::error::Error;
use crate::frame::{flags, FrameId, FramePool};
use crate::radix::{Mark, RadixTree, WriterLock};
use crate::rmap::{Mapper, MappingId, ReverseMap};
use crate::shootdown::ShootdownBatch;
use crate::slot::{self, Refused, Slot};
use crate::store::{BackingStore, PageBuf};
use crate::sync::{epoch, AtomicU64, Mutex, Ordering, RwLock, RwLockReadGuard};
use crate::PAGE_SIZE;

static NEXT_MAP_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// The cached pages of one file or block device, indexed by page number.
///
/// Lookups ([`find`](Self::find), the hit path of [`load`](Self::load)) take
/// no lock and do not allocate: an epoch pin, a walk of the radix tree, and
/// one CAS on the page's slot word. Misses insert under the writer lock and
/// read from the [`BackingStore`] with no lock held.
///
/// ```
/// use std::sync::Arc;
/// use pagemap::{FramePool, MemStore, PageMap};
///
/// let pool = Arc::new(FramePool::new(64).unwrap());
/// let map = PageMap::new(pool, Arc::new(MemStore::new()));
/// {
///     let page = map.load(7).unwrap();       // miss: read from the store
///     page.write(0, b"hello").unwrap();      // marks the page dirty
/// }                                          // dropping the reference is the put
/// let page = map.find(7).unwrap().unwrap();  // hit: lock-free
/// let mut buf = [0u8; 5];
/// page.read(0, &mut buf).unwrap();
/// assert_eq!(&buf, b"hello");
/// drop(page);
/// assert_eq!(map.writeback(..).written, 1);
/// assert_eq!(map.free_unused().freed, 1);
/// assert_eq!(map.nr_pages(), 0);
/// ```
pub struct PageMap {
    pub(crate) id: u32,
    pub(crate) tree: RadixTree,
    /// Writer lock: tree shape, slot publication and marks.
    pub(crate) lock: WriterLock,
    /// One remover at a time (free-unused, removal, truncate, invalidate,
    /// destroy, discarding failed loads).
    pub(crate) remover: Mutex<()>,
    /// The mappings of this file, by file-page range (lock order: after `lock`).
    pub(crate) rmap: RwLock<ReverseMap>,
    pub(crate) pool: Arc<FramePool>,
    pub(crate) store: Arc<dyn BackingStore>,
    pub(crate) nr_pages: AtomicU64,
    /// The first page beyond the end of the file (`u64::MAX`: no end).
    /// Changed under the writer lock; loads and inserts refuse pages from
    /// here on.
    pub(crate) end: AtomicU64,
    /// Linux's `invalidate_lock`: truncate holds it exclusively (lock order:
    /// before `remover`); paths that copy entries of this file's pages from
    /// one mapping to another without the page lock (fork) hold it shared.
    pub(crate) invalidate_lock: RwLock<()>,
}

/// A counted reference to a cached page (a slot holder). Dropping it is the put.
///
/// While it lives the page cannot be removed, and its contents can be read and
/// written without any lock on the map.
pub struct PageRef<'a> {
    map: &'a PageMap,
    pub(crate) slot: &'a Slot,
    frame: FrameId,
    index: u64,
}

/// What [`PageMap::free_unused`] did.
#[derive(Debug, Default)]
pub struct FreeReport {
    /// Pages removed and their frames returned to the pool.
    pub freed: u64,
    /// Dirty pages written back before being freed.
    pub written: u64,
    /// Pages skipped because someone held a reference.
    pub referenced: u64,
    /// Pages that someone took while the removal was in progress (kept).
    pub raced: u64,
    /// Pages skipped because a mapping (VM region) covers them.
    pub mapped: u64,
    /// Write errors: those pages are kept, dirty, with their data.
    pub errors: Vec<Error>,
}

/// What [`PageMap::writeback`] did.
#[derive(Debug, Default)]
pub struct WritebackReport {
    /// Pages written.
    pub written: u64,
    /// Pages whose dirty bits were harvested from page table entries.
    pub harvested: u64,
    /// Shootdowns issued to write-protect mapped pages (one per address space).
    pub shootdowns: u64,
    /// Dirty pages beyond the end of the file, dropped instead of written.
    pub discarded: u64,
    /// Write errors: those pages stay dirty.
    pub errors: Vec<Error>,
}

/// Metadata memory of a page map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryStats {
    /// Cached pages.
    pub pages: u64,
    /// Radix tree nodes.
    pub nodes: usize,
    /// Bytes of radix tree nodes.
    pub node_bytes: usize,
    /// Bytes of frame metadata for the cached pages.
    pub frame_bytes: usize,
}

impl MemoryStats {
    /// Metadata bytes per cached page (tree plus frame metadata, contents excluded).
    pub fn bytes_per_page(&self) -> f64 {
        if self.pages == 0 {
            return 0.0;
        }
        (self.node_bytes + self.frame_bytes) as f64 / self.pages as f64
    }
}

/// Turns any range of page indices into `(first, last)`, `None` if empty.
pub(crate) fn inclusive(range: &impl RangeBounds<u64>) -> Option<(u64, u64)> {
    let first = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let last = match range.end_bound() {
        Bound::Included(&e) => e,
        Bound::Excluded(&e) => e.checked_sub(1)?,
        Bound::Unbounded => u64::MAX,
    };
    (first <= last).then_some((first, last))
}

impl PageMap {
    /// An empty page map caching `store`, taking frames from `pool`.
    pub fn new(pool: Arc<FramePool>, store: Arc<dyn BackingStore>) -> Self {
        Self {
            id: NEXT_MAP_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            tree: RadixTree::new(),
            lock: WriterLock::new(),
            remover: Mutex::new(()),
            rmap: RwLock::new(ReverseMap::new()),
            pool,
            store,
            nr_pages: AtomicU64::new(0),
            end: AtomicU64::new(u64::MAX),
            invalidate_lock: RwLock::new(()),
        }
    }

    /// Holds off [`truncate`](Self::truncate) (Linux's
    /// `filemap_invalidate_lock_shared`) while the caller copies page table
    /// entries that show this file's pages, or private copies of them, from
    /// one mapping into another (fork does, for private mappings): truncate
    /// then zaps either the source before the copy or both after it, never
    /// the source alone. Not needed (nor to be held) by faults, which use a
    /// [`map_page`](Self::map_page). Do not take it twice in one thread:
    /// a truncate waiting between the two would deadlock.
    pub fn invalidate_lock_shared(&self) -> RwLockReadGuard<'_, ()> {
        self.invalidate_lock.read()
    }

    /// The first page beyond the end of the file: `u64::MAX` (no end: every
    /// page, `u64::MAX` included, can be loaded) until a
    /// [`truncate`](Self::truncate). Loads of pages from here on fail with
    /// [`Error::BeyondEof`].
    #[inline]
    pub fn end(&self) -> u64 {
        // SeqCst: a fault reads it after its SeqCst count on the slot word;
        // truncate stores it, then reads the slot words: one of the two sees
        // the other (see `crate::fault`).
        crate::sync::sb::load(&self.end, Ordering::SeqCst)
    }

    /// Whether page `index` is at or beyond the end of the file.
    #[inline]
    pub fn is_beyond_end(&self, index: u64) -> bool {
        self.check_end(index).is_err()
    }

    #[inline]
    pub(crate) fn check_end(&self, index: u64) -> Result<(), Error> {
        let end = self.end();
        if index >= end && end != u64::MAX {
            return Err(Error::BeyondEof { index, end });
        }
        Ok(())
    }

    /// The frame pool.
    pub fn pool(&self) -> &Arc<FramePool> {
        &self.pool
    }

    /// The backing store.
    pub fn store(&self) -> &Arc<dyn BackingStore> {
        &self.store
    }

    /// Pages in the map (up to date, loading, or left by a failed read).
    pub fn nr_pages(&self) -> u64 {
        self.nr_pages.load(Ordering::Relaxed)
    }

    /// Holders of the page at `index` now (0 if absent): a debugging aid.
    pub fn holders(&self, index: u64) -> u64 {
        let guard = epoch::pin();
        self.tree.lookup(index, &guard).map_or(0, |s| {
            if slot::is_present(s.load()) {
                slot::refs(s.load())
            } else {
                0
            }
        })
    }

    /// Metadata memory now.
    pub fn memory(&self) -> MemoryStats {
        let pages = self.nr_pages();
        let nodes = self.tree.nodes();
        MemoryStats {
            pages,
            nodes,
            node_bytes: nodes * RadixTree::NODE_BYTES,
            frame_bytes: pages as usize * FramePool::metadata_bytes_per_frame(),
        }
    }

    /// The up-to-date page at `index`, if cached. Never blocks; lock-free.
    ///
    /// A page still loading (or whose read failed) counts as absent here;
    /// [`load`](Self::load) waits for it instead.
    #[inline]
    pub fn find(&self, index: u64) -> Result<Option<PageRef<'_>>, Error> {
        self.take(index, false, slot::Limit::User)
    }

    /// The up-to-date page at `index` if it is still in `frame` (a page table
    /// entry named that frame), else `None` (it was removed, maybe replaced).
    ///
    /// For unmappers (munmap, mprotect, a [`Mapper::clean`]) that must hold
    /// the page while they move a dirty bit from an entry to it: the hold is
    /// taken from the reserve above [`slot::MAX_REFS`], so it succeeds even
    /// while users hold the page at their limit, and it never waits. Such a
    /// hold must end within the operation that took it.
    ///
    /// # Panics
    /// If the reserve ([`slot::MAX_HELD`]) is exhausted: more than 8 million
    /// short holds of one page at once means some caller keeps them.
    pub fn find_frame(&self, index: u64, frame: FrameId) -> Option<PageRef<'_>> {
        self.take_reserved(index, false)
            .filter(|p| p.frame == frame)
    }

    /// A hold from the reserve (see [`find_frame`](Self::find_frame)).
    pub(crate) fn take_reserved(&self, index: u64, allow_loading: bool) -> Option<PageRef<'_>> {
        match self.take(index, allow_loading, slot::Limit::Reserved) {
            Ok(page) => page,
            Err(e) => panic!("the reserve of short holds is exhausted: {e}"),
        }
    }

    /// Takes a reference with [`Slot::get_fast`] (`allow_loading`: also a
    /// page that is not up to date yet) within `limit`.
    #[inline]
    pub(crate) fn take(
        &self,
        index: u64,
        allow_loading: bool,
        limit: slot::Limit,
    ) -> Result<Option<PageRef<'_>>, Error> {
        let guard = epoch::pin();
        let Some(slot) = self.tree.lookup(index, &guard) else {
            return Ok(None);
        };
        match slot.get_fast(allow_loading, limit) {
            Ok(word) => Ok(Some(self.page_ref(slot, word, index))),
            Err(Refused::Overflow) => Err(Error::RefcountOverflow { index }),
            Err(_) => Ok(None),
        }
    }

    /// Takes a reference with the transition `f`.
    #[inline]
    fn get(
        &self,
        index: u64,
        f: impl FnMut(u64) -> Result<u64, Refused>,
    ) -> Result<Option<PageRef<'_>>, Error> {
        let guard = epoch::pin();
        let Some(slot) = self.tree.lookup(index, &guard) else {
            return Ok(None);
        };
        match slot.update(f) {
            Ok((_, new)) => Ok(Some(self.page_ref(slot, new, index))),
            Err(Refused::Overflow) => Err(Error::RefcountOverflow { index }),
            Err(_) => Ok(None),
        }
    }

    /// Builds the RAII reference for a slot we now hold.
    #[inline]
    pub(crate) fn page_ref<'a>(&'a self, slot: &Slot, word: u64, index: u64) -> PageRef<'a> {
        // SAFETY: we hold a count on this slot, so it is non-empty, so its
        // leaf is never unlinked (only empty nodes are) and lives as long as
        // the map, which `'a` borrows. The epoch guard is no longer needed.
        let slot: &'a Slot = unsafe { &*(slot as *const Slot) };
        let frame = FrameId::new(slot::frame(word)).expect("held slot has a frame");
        // The insert set the owner before publishing (Akaros did not: defect 2).
        debug_assert_eq!(
            self.pool.owner(frame),
            (self.id, index),
            "frame owner not published"
        );
        PageRef {
            map: self,
            slot,
            frame,
            index,
        }
    }

    /// The page at `index`, read from the backing store on a miss.
    ///
    /// Concurrent loaders of one index cause exactly one read; the others
    /// sleep until it finishes. A read error goes to the loader and to every
    /// waiter of that read; the page is left unlocked (a later `load` retries).
    pub fn load(&self, index: u64) -> Result<PageRef<'_>, Error> {
        self.check_end(index)?;
        loop {
            if let Some(page) = self.take(index, true, slot::Limit::User)? {
                return self.wait_uptodate(page);
            }
            // Miss: allocate and initialise the frame before taking the lock.
            let frame = self.pool.alloc()?;
            self.pool
                .set_owner(frame, self.id, index, flags::LOCKED | flags::PAGEMAP);
            match self.insert(index, frame) {
                Ok(Some(page)) => return self.fill(page),
                inserted => {
                    // Benign race: someone inserted first (use theirs), or
                    // a truncate moved the end below `index`.
                    self.pool.clear_flags(frame, !0);
                    self.pool.free(frame);
                    inserted?;
                }
            }
        }
    }

    /// The page at `index` if cached and up to date, else [`Error::WouldBlock`].
    /// Never sleeps (the fault handler calls it under an address-space lock).
    pub fn load_nowait(&self, index: u64) -> Result<PageRef<'_>, Error> {
        self.check_end(index)?;
        self.find(index)?.ok_or(Error::WouldBlock { index })
    }

    /// Publishes `frame` (LOCKED, owner set) at `index`, holding one count.
    /// `None` if the slot is taken; `BeyondEof` if a truncate got there first
    /// (checked under the writer lock, which truncate takes to move the end).
    fn insert(&self, index: u64, frame: FrameId) -> Result<Option<PageRef<'_>>, Error> {
        let g = self.lock.lock();
        self.check_end(index)?;
        let at = self.tree.slot_for_insert(index, &g);
        let slot = at.slot;
        if !Slot::is_vacant(slot.load()) {
            return Ok(None);
        }
        let word = slot::inserted(frame.get(), true);
        // Release inside: frame owner/index/flags set before are visible to
        // any reader that sees this word (Akaros published first: defect 2).
        at.fill(word);
        self.nr_pages.fetch_add(1, Ordering::Relaxed);
        drop(g);
        Ok(Some(self.page_ref(slot, word, index)))
    }

    /// Reads a page whose frame lock we hold, then unlocks it.
    fn fill<'a>(&'a self, page: PageRef<'a>) -> Result<PageRef<'a>, Error> {
        let mut buf: PageBuf = [0; PAGE_SIZE];
        let frame = page.frame;
        // A new read: an earlier read's error is no longer this page's news.
        self.pool
            .clear_flags(frame, flags::ERROR | flags::ERRKIND_MASK);
        match self.store.read_page(page.index, &mut buf) {
            Ok(()) => {
                self.pool.write_page(frame, &buf);
                self.pool
                    .clear_flags(frame, flags::ERROR | flags::ERRKIND_MASK);
                self.pool.set_flags(frame, flags::UPTODATE);
                // Release: contents before the word that says "up to date".
                page.slot.set_loaded();
                self.pool.unlock(frame);
                Ok(page)
            }
            Err(source) => {
                self.pool.set_error(frame, source.kind());
                self.pool.unlock(frame);
                let index = page.index;
                drop(page);
                self.discard_failed(index, frame);
                Err(Error::Read { index, source })
            }
        }
    }

    /// Waits for a page we hold to be up to date, or fills it ourselves if
    /// nobody is loading it (a previous read failed).
    fn wait_uptodate<'a>(&'a self, page: PageRef<'a>) -> Result<PageRef<'a>, Error> {
        // An ERROR already there when we arrive is an earlier read's: we
        // retry rather than report it (found by the loom model
        // stale_read_error). Only a read that fails while we wait is ours.
        let stale = self.pool.flags(page.frame) & flags::ERROR != 0;
        loop {
            if page.slot.load() & slot::LOADING == 0 {
                return Ok(page);
            }
            if self.pool.try_lock(page.frame) {
                if page.slot.load() & slot::LOADING == 0 {
                    self.pool.unlock(page.frame);
                    return Ok(page);
                }
                let f = self.pool.flags(page.frame);
                if !stale && f & flags::ERROR != 0 {
                    // The read we waited for failed: report it, do not retry.
                    let kind = self.pool.error_kind(page.frame);
                    self.pool.unlock(page.frame);
                    let index = page.index;
                    return Err(Error::Read {
                        index,
                        source: std::io::Error::new(kind, "read failed in another loader"),
                    });
                }
                return self.fill(page);
            }
            self.pool.wait_unlocked(page.frame);
        }
    }

    /// Removes a page whose read failed, if nobody holds it and no remover
    /// runs (if one does, it will find the page).
    fn discard_failed(&self, index: u64, frame: FrameId) {
        let Some(_r) = self.remover.try_lock() else {
            return;
        };
        let g = self.lock.lock();
        let guard = epoch::pin();
        let Some(slot) = self.tree.lookup(index, &guard) else {
            return;
        };
        let won = slot.update(|w| {
            if slot::frame(w) == frame.get() && w & slot::LOADING != 0 {
                slot::yank(slot::mark_removal(w)?)
            } else {
                Err(Refused::Busy)
            }
        });
        if won.is_ok() {
            self.tree.remove_yanked(index, &g);
            self.nr_pages.fetch_sub(1, Ordering::Relaxed);
            drop(g);
            self.pool.free(frame);
        }
    }

    // ---- reverse map ---------------------------------------------------------

    /// Registers a mapping of this file. It must be fully initialised: from
    /// now on removal and free-unused treat the pages it covers as mapped.
    pub fn add_mapping(&self, mapper: Arc<dyn Mapper>) -> MappingId {
        self.rmap.write().add(mapper)
    }

    /// Unregisters a mapping (after its page table entries are gone and its
    /// dirty bits harvested). Returns it, or `None` if unknown.
    pub fn remove_mapping(&self, id: MappingId) -> Option<Arc<dyn Mapper>> {
        self.rmap.write().remove(id)
    }

    /// Mappings registered now.
    pub fn nr_mappings(&self) -> usize {
        self.rmap.read().len()
    }

    /// The mappings overlapping file pages `range`, in order of first page.
    pub fn mappings(&self, range: impl RangeBounds<u64>) -> Vec<(MappingId, Arc<dyn Mapper>)> {
        let mut out = Vec::new();
        if let Some((first, last)) = inclusive(&range) {
            self.rmap
                .read()
                .for_each_overlapping(first, last, &mut |id, m| {
                    out.push((id, m.clone()));
                    true
                });
        }
        out
    }

    /// Whether any mapping covers page `index`.
    pub fn is_mapped(&self, index: u64) -> bool {
        self.rmap.read().covers(index)
    }

    /// Whether a pinned (MAP_LOCKED) mapping covers page `index`.
    pub fn is_pinned(&self, index: u64) -> bool {
        self.rmap.read().pinned_covers(index)
    }

    // ---- dirty tracking ----------------------------------------------------

    /// Sets a page's DIRTY flag under its page lock (see
    /// [`PageRef::mark_dirty`]) and its tree mark. The caller holds the page
    /// or is the remover that owns it.
    pub(crate) fn mark_frame_dirty(&self, index: u64, frame: FrameId) {
        self.pool.lock(frame);
        let old = self.pool.set_flags(frame, flags::DIRTY);
        self.pool.unlock(frame);
        if old & flags::DIRTY == 0 {
            self.sync_dirty_mark(index, frame);
        }
    }

    /// Brings the tree's DIRTY mark in line with the page's DIRTY flag.
    /// Every clean<->dirty flag change is followed by one of these, so the
    /// last one (under the writer lock) sees the final state.
    pub(crate) fn sync_dirty_mark(&self, index: u64, frame: FrameId) {
        let g = self.lock.lock();
        if self.pool.flags(frame) & flags::DIRTY != 0 {
            self.tree.set_mark(index, Mark::Dirty, &g);
        } else {
            self.tree.clear_mark(index, Mark::Dirty, &g);
        }
    }

    // ---- iteration ---------------------------------------------------------

    /// The first cached index `>= from` (loading pages included).
    pub fn next_present(&self, from: u64) -> Option<u64> {
        let guard = epoch::pin();
        self.tree.next_present(from, &guard).map(|(i, _)| i)
    }

    /// The first index `>= from` whose page is marked dirty.
    pub fn next_dirty(&self, from: u64) -> Option<u64> {
        let guard = epoch::pin();
        self.tree
            .next_marked(from, Mark::Dirty, &guard)
            .map(|(i, _)| i)
    }

    /// The cached indices in `range`, in order (a snapshot).
    pub fn cached_indices(&self, range: impl RangeBounds<u64>) -> Vec<u64> {
        self.collect(range, None)
    }

    /// The dirty indices in `range`, in order (a snapshot).
    pub fn dirty_indices(&self, range: impl RangeBounds<u64>) -> Vec<u64> {
        self.collect(range, Some(Mark::Dirty))
    }

    fn collect(&self, range: impl RangeBounds<u64>, mark: Option<Mark>) -> Vec<u64> {
        let mut out = Vec::new();
        let Some((first, last)) = inclusive(&range) else {
            return out;
        };
        let guard = epoch::pin();
        let mut from = first;
        loop {
            let hit = match mark {
                None => self.tree.next_present(from, &guard),
                Some(m) => self.tree.next_marked(from, m, &guard),
            };
            match hit {
                Some((i, _)) if i <= last => {
                    out.push(i);
                    match i.checked_add(1) {
                        Some(n) => from = n,
                        None => break,
                    }
                }
                _ => break,
            }
        }
        out
    }

    // ---- writeback -----------------------------------------------------------

    /// Writes back the dirty pages in `range` (msync; [`sync`](Self::sync)
    /// for all of them; a [`Flusher`](crate::Flusher) calls it periodically).
    ///
    /// First every mapping of the range write-protects and cleans its page
    /// table entries ([`Mapper::clean`]), marking the pages it found dirty,
    /// and one shootdown per address space makes that stick: a write after
    /// it faults or sets a dirty bit again, so it is never lost. Then the
    /// dirty pages are tagged (TOWRITE) and only tagged pages are written, so
    /// a writer that keeps dirtying pages cannot make this run forever. Each
    /// page is copied under its page lock (no torn page) and written with no
    /// lock held; a page dirtied again meanwhile stays dirty. A write error
    /// leaves the page dirty and is reported.
    pub fn writeback(&self, range: impl RangeBounds<u64>) -> WritebackReport {
        let mut report = WritebackReport::default();
        let Some((first, last)) = inclusive(&range) else {
            return report;
        };
        let mappers = self.rmap.read().overlapping(first, last);
        if !mappers.is_empty() {
            let mut batch = ShootdownBatch::new();
            let mut harvested: Vec<PageRef<'_>> = Vec::new();
            for m in &mappers {
                let (mf, ml) = m.file_pages();
                m.clean(
                    first.max(mf),
                    last.min(ml),
                    &mut batch,
                    &mut |index, frame| {
                        // The mapper holds the page: it is here, so this finds it.
                        match self.find_frame(index, frame) {
                            Some(page) => harvested.push(page),
                            None => panic!("page {index} left the cache while a mapper held it"),
                        }
                    },
                );
            }
            report.shootdowns = batch.flush().shootdowns;
            // Only now: no CPU writes through the old entries any more.
            for page in &harvested {
                page.mark_dirty();
            }
            report.harvested = harvested.len() as u64;
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
                        Err(e) => report.errors.push(e),
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
        let g = self.lock.lock();
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
        let g = self.lock.lock();
        self.tree.clear_mark(index, mark, &g);
    }

    fn clear_mark_if_present(&self, index: u64, mark: Mark) {
        let g = self.lock.lock();
        let guard = epoch::pin();
        if self
            .tree
            .lookup(index, &guard)
            .is_some_and(|s| slot::is_present(s.load()))
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
        let mut buf: PageBuf = [0; PAGE_SIZE];
        self.pool.lock_bit(frame, flags::WRITEBACK);
        self.pool.lock(frame);
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
        // Snapshot under the page lock, then clean: a write after this point
        // dirties the page again, so nothing is lost. Writers do not wait for
        // WRITEBACK; the page lock alone keeps a copy from being torn.
        self.pool.read_page(frame, &mut buf);
        self.pool.clear_flags(frame, flags::DIRTY);
        self.pool.unlock(frame);
        let result = self.store.write_page(page.index, &buf);
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

    // ---- free-unused ------------------------------------------------------

    /// Drops every unreferenced page: clean ones at once, dirty ones after
    /// writing them back. Referenced pages are skipped; a page someone takes
    /// during the call is kept; a write error keeps the page, dirty, and is
    /// reported. Removers on one map are serialised: this waits for another.
    ///
    /// Pages covered by a mapping (see [`add_mapping`](Self::add_mapping))
    /// are skipped: they may have page table entries. Removing those is the
    /// job of the multi-pass removal, which unmaps them first.
    pub fn free_unused(&self) -> FreeReport {
        let _remover = self.remover.lock();
        let mut report = FreeReport::default();
        // Pass 1: mark every unreferenced page REMOVAL.
        let mut marked: Vec<(u64, FrameId)> = Vec::new();
        {
            let guard = epoch::pin();
            let mut from = 0;
            while let Some((index, slot)) = self.tree.next_present(from, &guard) {
                match slot.update(slot::mark_removal) {
                    Ok((_, w)) => marked.push((index, frame_of(w))),
                    Err(Refused::Busy) => report.referenced += 1,
                    Err(_) => {}
                }
                match index.checked_add(1) {
                    Some(n) => from = n,
                    None => break,
                }
            }
        }
        // Mapped pages stay (Akaros, 2018: put back what a VMR covers). The
        // check comes after the mark: a mapping added later can only reach
        // the page through a lookup, which clears REMOVAL, so the yank fails.
        {
            let rmap = self.rmap.read();
            if rmap.len() > 0 {
                marked.retain(|&(index, frame)| {
                    if !rmap.covers(index) {
                        return true;
                    }
                    self.unmark(index, frame);
                    report.mapped += 1;
                    false
                });
            }
        }
        // Pass 2: write back the dirty ones, no map lock held.
        marked.retain(|&(index, frame)| {
            if self.pool.flags(frame) & flags::DIRTY == 0 {
                return true;
            }
            match self.write_marked(index, frame) {
                Ok(Some(wrote)) => {
                    report.written += u64::from(wrote == Wrote::Written);
                    true
                }
                Ok(None) => {
                    report.raced += 1;
                    false
                }
                Err(e) => {
                    report.errors.push(e);
                    false
                }
            }
        });
        // Pass 3: yank what is still marked; free frames after the lock.
        let freed = self.yank_marked(marked, false, &mut report.raced, &mut 0);
        for frame in freed {
            self.pool.free(frame);
            report.freed += 1;
        }
        report
    }

    /// Takes back our REMOVAL mark (if a holder has not already cleared it).
    pub(crate) fn unmark(&self, index: u64, frame: FrameId) {
        let guard = epoch::pin();
        if let Some(slot) = self.tree.lookup(index, &guard) {
            let _ = slot.update(|w| {
                if slot::frame(w) == frame.get() && w & slot::REMOVAL != 0 {
                    Ok(slot::unmark_removal(w))
                } else {
                    Err(Refused::Busy)
                }
            });
        }
    }

    /// Writes back a page marked for removal, keeping the mark.
    /// `Ok(Some(wrote))`: still marked (`wrote`: what this call did: a
    /// page may have been cleaned meanwhile); `Ok(None)`: someone took it.
    ///
    /// The remover holds the page for the write with a count that leaves
    /// REMOVAL set ([`slot::get_marked`]), so any other lookup meanwhile
    /// still clears it, even one that lets go before we do. (It used to take
    /// an ordinary count and re-mark the page if it was the sole holder at
    /// the end; a fault that took the page, mapped it and let go during the
    /// write then went unseen, and the yank freed a mapped frame. The soak
    /// test found it.)
    pub(crate) fn write_marked(&self, index: u64, frame: FrameId) -> Result<Option<Wrote>, Error> {
        let Some(page) = self.get(index, |w| {
            if slot::frame(w) != frame.get() {
                return Err(Refused::Busy);
            }
            slot::get_marked(w)
        })?
        else {
            return Ok(None);
        };
        let wrote = self.write_one(&page);
        let slot = page.slot;
        std::mem::forget(page); // the put is ours, to see the mark after it
        let after = slot.put();
        let still_marked = after & slot::REMOVAL != 0;
        match wrote {
            Ok(wrote) if still_marked => Ok(Some(wrote)),
            Ok(_) => Ok(None),
            Err(e) => {
                // Kept, dirty: take the mark back.
                self.unmark(index, frame);
                Err(e)
            }
        }
    }

    // ---- debugging -------------------------------------------------------

    /// A human-readable dump of the map: every page with its slot and frame state.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let guard = epoch::pin();
        let _ = writeln!(
            s,
            "PageMap #{}: {} pages, {} nodes, height {}, pool {}/{} free, mappings {:?}",
            self.id,
            self.nr_pages(),
            self.tree.nodes(),
            self.tree.height(&guard),
            self.pool.free_frames(),
            self.pool.capacity(),
            self.rmap.read()
        );
        let mut from = 0;
        while let Some((index, slot)) = self.tree.next_present(from, &guard) {
            let w = slot.load();
            let frame = frame_of(w);
            let f = self.pool.flags(frame);
            let _ = writeln!(
                s,
                "  [{index:#x}] {frame:?} refs={} slot={}{}{} frame={}",
                slot::refs(w),
                if w & slot::REMOVAL != 0 { "R" } else { "-" },
                if w & slot::LOADING != 0 { "L" } else { "-" },
                if self.tree.has_mark(index, Mark::Dirty, &guard) {
                    "D"
                } else {
                    "-"
                },
                flag_names(f)
            );
            match index.checked_add(1) {
                Some(n) => from = n,
                None => break,
            }
        }
        s
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

pub(crate) fn frame_of(word: u64) -> FrameId {
    FrameId::new(slot::frame(word)).expect("present slot has a frame")
}

fn flag_names(f: u32) -> String {
    let names = [
        (flags::LOCKED, "LOCKED"),
        (flags::UPTODATE, "UPTODATE"),
        (flags::DIRTY, "DIRTY"),
        (flags::PAGEMAP, "PAGEMAP"),
        (flags::WRITEBACK, "WRITEBACK"),
        (flags::ERROR, "ERROR"),
        (flags::MAPPED, "MAPPED"),
        (flags::PINNED, "PINNED"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| *n)
        .collect();
    v.join("|")
}

impl fmt::Debug for PageMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageMap")
            .field("id", &self.id)
            .field("pages", &self.nr_pages())
            .field("nodes", &self.tree.nodes())
            .finish()
    }
}

impl Drop for PageMap {
    /// Writes back dirty pages (best effort: call [`PageMap::sync`] first to
    /// see errors), then returns every frame to the pool.
    fn drop(&mut self) {
        let report = self.sync();
        for e in &report.errors {
            eprintln!(
                "pagemap: dropping page map #{}: {e}; that page's data is lost",
                self.id
            );
        }
        let guard = epoch::pin();
        let mut from = 0;
        while let Some((index, slot)) = self.tree.next_present(from, &guard) {
            let w = slot.load();
            assert_eq!(slot::refs(w), 0, "page map dropped with a held page");
            self.pool.free(frame_of(w));
            match index.checked_add(1) {
                Some(n) => from = n,
                None => break,
            }
        }
    }
}

impl<'a> PageRef<'a> {
    /// Page index in the file.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The frame holding the page.
    pub fn frame(&self) -> FrameId {
        self.frame
    }

    /// The page map it belongs to.
    pub fn map(&self) -> &'a PageMap {
        self.map
    }

    /// Frame flags now (see [`flags`](crate::flags)).
    pub fn flags(&self) -> u32 {
        self.map.pool.flags(self.frame)
    }

    /// Whether the contents are valid.
    pub fn is_uptodate(&self) -> bool {
        self.slot.load() & slot::LOADING == 0
    }

    /// Whether the page differs from the backing store.
    pub fn is_dirty(&self) -> bool {
        self.flags() & flags::DIRTY != 0
    }

    /// Holders of this page now (this one included).
    pub fn holders(&self) -> u64 {
        slot::refs(self.slot.load())
    }

    /// Copies bytes out of the page. Lock-free; a concurrent writer's bytes
    /// may be seen partly, as with shared memory.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.map.pool.read(self.frame, offset, buf)
    }

    /// Copies the whole page out.
    pub fn read_page(&self, buf: &mut PageBuf) {
        self.map.pool.read_page(self.frame, buf)
    }

    /// Copies `data` into the page at `offset` under the page lock (so a
    /// writeback never copies a half-written range) and marks it dirty.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), Error> {
        let pool = &self.map.pool;
        if data.is_empty() {
            // Checked, but nothing changes: the page stays clean.
            return pool.write(self.frame, offset, data);
        }
        pool.lock(self.frame);
        let r = pool.write(self.frame, offset, data);
        // DIRTY after the copy: a writeback that cleaned the page before we
        // finished sees it dirty again.
        let old = if r.is_ok() {
            pool.set_flags(self.frame, flags::DIRTY)
        } else {
            flags::DIRTY
        };
        pool.unlock(self.frame);
        r?;
        if old & flags::DIRTY == 0 {
            self.map.sync_dirty_mark(self.index, self.frame);
        }
        Ok(())
    }

    /// Marks the page dirty (after writing it some other way).
    ///
    /// Under the page lock, so that it cannot fall between a writeback's
    /// snapshot and its clearing of DIRTY (which would clean the page
    /// without the writes this mark stands for).
    pub fn mark_dirty(&self) {
        self.map.mark_frame_dirty(self.index, self.frame);
    }

    /// Marks the page clean, discarding the difference from the store.
    pub fn clear_dirty(&self) {
        if self.map.pool.clear_flags(self.frame, flags::DIRTY) & flags::DIRTY != 0 {
            self.map.sync_dirty_mark(self.index, self.frame);
        }
    }

    /// Another reference to the same page.
    pub fn try_clone(&self) -> Result<PageRef<'a>, Error> {
        let (_, w) = self.slot.update(slot::get).map_err(|r| match r {
            Refused::Overflow => Error::RefcountOverflow { index: self.index },
            _ => unreachable!("a held slot is present"),
        })?;
        Ok(self.map.page_ref(self.slot, w, self.index))
    }
}

impl Drop for PageRef<'_> {
    #[inline]
    fn drop(&mut self) {
        self.slot.put();
    }
}

impl fmt::Debug for PageRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageRef")
            .field("index", &self.index)
            .field("frame", &self.frame)
            .field("holders", &self.holders())
            .field("flags", &flag_names(self.flags()))
            .finish()
    }
}
