//! The page map layer: one file's (or block device's) cached pages, a
//! [`PageMap`] and its [`PageRef`]s. It may use the layers below it: the
//! slot word (`crate::slot`), the radix tree (`crate::radix`), the frame
//! pool (`crate::frame`), the backing store (`crate::store`), the reverse
//! map (`crate::rmap`) and shootdown batches (`crate::shootdown`). Above it
//! the removal protocols (`crate::remove`), faults (`crate::fault`), the
//! flusher and the crate's users call it; it calls none of them.
//!
//! One concept per file:
//! * `lookup`: find, load and fill (the lock-free hit path, the miss path);
//! * `readahead`: the miss path for a window of pages, with one store I/O;
//! * `page_ref`: [`PageRef`], the counted reference to a page;
//! * `mappings`: registering mappings, and the DIRTY mark kept in step with
//!   the frame's DIRTY flag;
//! * `writeback`: writeback and sync (contiguous dirty pages as one
//!   extent), and the write of one page;
//! * `writeback`: writeback and fsync, and the write of one page;
//! * `reclaim`: free_unused, and what every remover shares with it (taking
//!   a REMOVAL mark back, the remover's write-back hold, the final yank);
//! * `inspect`: read-only views (holders, memory, iteration, the dump).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::ops::{Bound, RangeBounds};

use crate::error::{Error, StoreError};
use crate::frame::{map_ctr, FramePool, MapStats, Sharded};
use crate::radix::RadixTree;
use crate::rmap::ReverseMap;
use crate::store::{BackingStore, Store, SubmitStore};
use crate::sync::{epoch, AtomicBool, AtomicU64, Mutex, Ordering, RwLock, RwLockReadGuard};

mod bytes;
pub use bytes::READAHEAD_WINDOW;
mod inspect;
mod lookup;
mod mappings;
mod page_ref;
mod readahead;
mod reclaim;
mod size;
mod writeback;

pub use inspect::MemoryStats;
pub use page_ref::{OwnedPageRef, PageRef};
pub(crate) use reclaim::Scratch;
pub use reclaim::{FreeReport, REMOVE_BATCH};
pub(crate) use writeback::record;
pub use writeback::{FsyncError, WritebackReport, HARVEST_CAP, MAX_REPORTED_ERRORS};
pub(crate) use writeback::{WbPolicy, WriteErrors, Wrote};

static NEXT_MAP_ID: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(1);

/// A fresh id for a reclaim owner (a page map or an `AnonOwner`: one id
/// space, as the pool's registry and the frames' owner field hold both).
pub(crate) fn next_owner_id() -> u32 {
    NEXT_MAP_ID.fetch_add(1, Ordering::Relaxed)
}

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
    /// The tree, and in it the writer lock (tree shape, slot publication
    /// and marks, the end of file): `tree.lock()`.
    pub(crate) tree: RadixTree,
    /// One remover at a time (free-unused, removal, truncate, invalidate,
    /// destroy, discarding failed loads); it guards the removers' reusable
    /// scratch space.
    pub(crate) remover: Mutex<Scratch>,
    /// The mappings of this file, by file-page range (lock order: after `lock`).
    pub(crate) rmap: RwLock<ReverseMap>,
    pub(crate) pool: Arc<FramePool>,
    pub(crate) store: Store,
    pub(crate) nr_pages: AtomicU64,
    /// The first page beyond the end of the file (`u64::MAX`: no end):
    /// `ceil(size / PAGE_SIZE)`. Changed under the writer lock, with
    /// `size`; loads and inserts refuse pages from here on.
    pub(crate) end: AtomicU64,
    /// The file's size in bytes (`u64::MAX`: no end), read from the store
    /// at creation. Changed under the writer lock together with `end`, and
    /// by a size change only (`set_size`, `truncate`, an extending
    /// `write_at`), which hold `invalidate_lock` exclusively.
    pub(crate) size: AtomicU64,
    /// The length in bytes the store is known to have (`u64::MAX`: no
    /// end, or unknown and never to be raised): its size at creation,
    /// raised by each write-back the store accepted (before the page's
    /// WRITEBACK bit is released), set by each of its `set_size` calls that
    /// succeeded (under `invalidate_lock`, exclusively). An extending
    /// `write_at` raises `size` alone and leaves the store's length to the
    /// write-back of the new last page; if that page leaves the cache
    /// unwritten (a punch, remove-or-zero, a discard), `persist_size` makes
    /// the store as long as `size` at the next fsync (Linux writes `i_size`
    /// with the inode).
    pub(crate) store_size: AtomicU64,
    /// A shrink's second cut of the store failed: the store may hold old
    /// bytes past the size (a write-back of a cut page landing between the
    /// two cuts). The next extension cuts the store to the size first.
    /// Under `invalidate_lock`, exclusively.
    pub(crate) store_cut_failed: AtomicBool,
    /// While a size extension runs, its first page (the old partial last
    /// page, or the old end): faults on pages from here on are refused
    /// ([`Error::WouldBlock`]: the handler retries) so that no CPU can
    /// write bytes past the old size that the new size would make file
    /// data. `u64::MAX` otherwise. A store-buffering pair with the faults'
    /// counts, as `end` is (see `size`).
    pub(crate) extending: AtomicU64,
    /// The page after the last one [`read_at`](Self::read_at) read: a
    /// read starting there is sequential and reads ahead (Linux's
    /// `file_ra_state.prev_pos`, one stream per map). A hint: Relaxed.
    pub(crate) ra_next: AtomicU64,
    /// Linux's `invalidate_lock`. Exclusive: size changes (truncate,
    /// `set_size`, a `write_at` past the size), remove-or-zero and hole punch, for their whole run (a
    /// punch across both its halves, cache then store). Shared: the miss
    /// path of a load (and so of a fault), from its insert to the end of its
    /// read from the store, never a hit; and paths that copy entries of this
    /// file's pages from one mapping to another without the page lock
    /// (fork). Lock order: before `remover`, before the tree's writer lock
    /// and page locks. Not recursive: a thread holding it shared must not
    /// miss in `load` (a waiting writer blocks the second read).
    pub(crate) invalidate_lock: RwLock<()>,
    /// The first page that ends beyond the store's
    /// [`max_size`](StoreControl::max_size) (`u64::MAX`: no limit); loads,
    /// lookups that miss and readahead refuse pages from here on.
    pub(crate) max_pages: u64,
    /// The store's `max_size`, for the error that refuses a page.
    pub(crate) max_size: u64,
    /// The write errors kept for [`fsync`](Self::fsync) to report (Linux's
    /// `errseq_t` in `address_space.wb_err`). A leaf lock, taken under a
    /// page's WRITEBACK bit.
    pub(crate) write_error: Mutex<WriteErrors>,
    /// Frames a truncate detached that still have holders. While any has,
    /// removers leave nodes that become empty linked (empty, reused by
    /// later inserts): a detached holder's put still reads its old slot.
    pub(crate) detached: AtomicU64,
    /// Hits, misses, store requests, evictions ([`stats`](Self::stats)).
    pub(crate) stats: Sharded<{ map_ctr::N }>,
    /// Reclaimers using the map now (`frame::reclaim`'s pins); the drop
    /// waits for them after unregistering.
    reclaim_pins: crate::sync::AtomicUsize,
}

/// `ceil(size / PAGE_SIZE)`: the first page beyond a file of `size` bytes
/// (`u64::MAX`, no end, for a size of `u64::MAX`).
#[inline]
pub(crate) fn end_of(size: u64) -> u64 {
    if size == u64::MAX {
        u64::MAX
    } else {
        size.div_ceil(crate::PAGE_SIZE as u64)
    }
}

/// How many bytes of page `index` are below a size of `size` bytes.
#[inline]
pub(crate) fn valid_of(size: u64, index: u64) -> usize {
    if size == u64::MAX {
        return crate::PAGE_SIZE;
    }
    let Some(start) = index.checked_mul(crate::PAGE_SIZE as u64) else {
        return 0;
    };
    size.saturating_sub(start).min(crate::PAGE_SIZE as u64) as usize
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
    /// An empty page map caching `store`, taking frames from `pool`; its
    /// size is the store's ([`StoreControl::size`](crate::StoreControl::size)).
    ///
    /// # Panics
    /// If the store fails to report its size ([`try_new`](Self::try_new)
    /// returns that error instead).
    pub fn new(pool: Arc<FramePool>, store: Arc<dyn BackingStore>) -> Arc<Self> {
        Self::try_new(pool, store).unwrap_or_else(|e| panic!("pagemap: creating a page map: {e}"))
    }

    /// [`new`](Self::new), or [`Error::Size`] if the store fails to report
    /// its size.
    pub fn try_new(pool: Arc<FramePool>, store: Arc<dyn BackingStore>) -> Result<Arc<Self>, Error> {
        Self::with_store(pool, Store::Sync(store))
    }

    /// An empty page map caching a completion-based `store` (see
    /// [`SubmitStore`]), taking frames from `pool`: loads and write-backs
    /// submit requests and sleep until the store completes them. Its size
    /// is the store's ([`StoreControl::size`](crate::StoreControl::size)).
    ///
    /// # Panics
    /// If the store fails to report its size
    /// ([`try_with_submit_store`](Self::try_with_submit_store) returns that
    /// error instead).
    pub fn with_submit_store(pool: Arc<FramePool>, store: Arc<dyn SubmitStore>) -> Arc<Self> {
        Self::try_with_submit_store(pool, store)
            .unwrap_or_else(|e| panic!("pagemap: creating a page map: {e}"))
    }

    /// [`with_submit_store`](Self::with_submit_store), or [`Error::Size`]
    /// if the store fails to report its size.
    pub fn try_with_submit_store(
        pool: Arc<FramePool>,
        store: Arc<dyn SubmitStore>,
    ) -> Result<Arc<Self>, Error> {
        Self::with_store(pool, Store::Submit(store))
    }

    fn with_store(pool: Arc<FramePool>, store: Store) -> Result<Arc<Self>, Error> {
        let size = store
            .size()
            .map_err(|source| Error::Size { source })?
            .unwrap_or(u64::MAX);
        let id = NEXT_MAP_ID.fetch_add(1, Ordering::Relaxed);
        let max_size = store.max_size();
        // A page is addressable if all of it is: (index + 1) * PAGE_SIZE
        // <= max_size. `u64::MAX` is "no limit" (index u64::MAX works).
        let max_pages = match max_size {
            u64::MAX => u64::MAX,
            m => m / crate::PAGE_SIZE as u64,
        };
        let map = Arc::new(Self::fields(id, pool, store, size, max_size, max_pages));
        // Registered with the pool once made (it has no page yet, so no
        // reclaimer looks for it before), so that reclaim can choose among
        // its pages; its drop unregisters it.
        let me: *const PageMap = Arc::as_ptr(&map);
        let me: *const dyn crate::frame::Evictor = me;
        // SAFETY: the map lives in its `Arc` until its drop, which
        // unregisters it and waits for its pins first (see `Drop`).
        unsafe {
            map.pool.register(
                id,
                core::ptr::NonNull::new(me.cast_mut()).expect("an Arc is not null"),
            );
        }
        Ok(map)
    }

    fn fields(
        id: u32,
        pool: Arc<FramePool>,
        store: Store,
        size: u64,
        max_size: u64,
        max_pages: u64,
    ) -> Self {
        Self {
            id,
            tree: RadixTree::new(),
            remover: Mutex::new(Scratch::default()),
            // Its ids carry this map's id: another map's are unknown here.
            rmap: RwLock::new(ReverseMap::for_owner(id)),
            pool,
            store,
            nr_pages: AtomicU64::new(0),
            end: AtomicU64::new(end_of(size)),
            size: AtomicU64::new(size),
            store_size: AtomicU64::new(size),
            store_cut_failed: AtomicBool::new(false),
            extending: AtomicU64::new(u64::MAX),
            ra_next: AtomicU64::new(0),
            invalidate_lock: RwLock::new(()),
            max_pages,
            max_size,
            write_error: Mutex::new(WriteErrors::default()),
            detached: AtomicU64::new(0),
            stats: Sharded::new(),
            reclaim_pins: crate::sync::AtomicUsize::new(0),
        }
    }

    /// This map's statistics now: hits, misses, store requests, evictions
    /// (see [`MapStats`]; [`FramePool::stats`] sums every map's).
    pub fn stats(&self) -> MapStats {
        MapStats::read(&self.stats)
    }

    /// Holds off [`truncate`](Self::truncate) and
    /// [`punch_hole`](Self::punch_hole) (Linux's
    /// `filemap_invalidate_lock_shared`) while the caller copies page table
    /// entries that show this file's pages, or private copies of them, from
    /// one mapping into another (fork does, for private mappings): truncate
    /// then zaps either the source before the copy or both after it, never
    /// the source alone. Not needed (nor to be held) by faults, which use a
    /// [`map_page`](Self::map_page); a [`load`](Self::load) that misses
    /// takes it itself. Do not take it twice in one thread, and do not
    /// [`load`](Self::load) a page of this map while holding it: a truncate
    /// or punch waiting between the two would deadlock.
    pub fn invalidate_lock_shared(&self) -> RwLockReadGuard<'_, ()> {
        self.invalidate_lock.read()
    }

    /// The first page beyond the end of the file, in pages:
    /// `ceil(size() / PAGE_SIZE)`, or `u64::MAX` for a map without an end
    /// (every page, `u64::MAX` included, can be loaded: a store that
    /// reports no size, until a [`truncate`](Self::truncate) or a
    /// [`set_size`](Self::set_size)). Loads of pages from here on fail with
    /// [`Error::BeyondEof`]; so do faults (SIGBUS), from the map's creation
    /// on. A page-granular [`truncate`](Self::truncate) to an end past
    /// 2^52 pages (no byte size can say it) keeps that end with a size of
    /// `u64::MAX`.
    #[inline]
    pub fn end(&self) -> u64 {
        // SeqCst: a fault reads it after its SeqCst count on the slot word;
        // truncate stores it, then reads the slot words: one of the two sees
        // the other (see `crate::fault`).
        crate::sync::sb::load(&self.end, Ordering::SeqCst)
    }

    /// The file's size in bytes: read from the store when the map was
    /// created ([`StoreControl::size`](crate::StoreControl::size)), changed by
    /// [`set_size`](Self::set_size), [`truncate`](Self::truncate) and
    /// writes past it ([`write_at`](Self::write_at)); `u64::MAX` for a map
    /// without an end. Bytes of the last page at or past it are not file
    /// data: write-backs leave them out, and a size extension zeroes them.
    #[inline]
    pub fn size(&self) -> u64 {
        // SeqCst: ordered with `end`, which changes with it (under the
        // writer lock); a reader that needs it exact holds the page lock of
        // the page it asks about (see `valid_bytes`).
        self.size.load(Ordering::SeqCst)
    }

    /// How many bytes of page `index`, from its start, are below the
    /// file's size: [`PAGE_SIZE`](crate::PAGE_SIZE) for a page wholly
    /// inside (or a map without an end), fewer for a partial last page, 0
    /// for a page at or past the end. A write-back writes exactly these; it
    /// reads them under the page lock, which a size change that concerns
    /// the page also takes.
    #[inline]
    pub fn valid_bytes(&self, index: u64) -> usize {
        valid_of(self.size(), index)
    }

    /// [`Error::BeyondSize`] if bytes `[offset, offset + len)` of page
    /// `index` (`offset + len <= PAGE_SIZE`) reach the file's size.
    pub(crate) fn check_size(&self, index: u64, offset: usize, len: usize) -> Result<(), Error> {
        let valid = self.valid_bytes(index);
        if offset + len <= valid {
            return Ok(());
        }
        let size = self.size();
        let at = index
            .saturating_mul(crate::PAGE_SIZE as u64)
            .saturating_add(offset as u64);
        Err(Error::BeyondSize {
            offset: at.max(size),
            size,
        })
    }

    /// Whether page `index` is at or beyond the end of the file.
    #[inline]
    pub fn is_beyond_end(&self, index: u64) -> bool {
        self.check_end(index).is_err()
    }

    /// [`Error::WouldBlock`] if a size extension keeps faults off page
    /// `index` now (see `extending`); the fault handler retries.
    #[inline]
    pub(crate) fn check_extending(&self, index: u64) -> Result<(), Error> {
        // SeqCst, through `sb`: the fault's half of the pair with the
        // extension's store of `extending` (the fault's count first, as
        // for `end`; see `size.rs`).
        // `u64::MAX` is "none" (an extension's first page is below it: a
        // finite size is at most 2^64 - 2 bytes).
        let from = crate::sync::sb::load(&self.extending, Ordering::SeqCst);
        if index >= from && from != u64::MAX {
            return Err(Error::WouldBlock { index });
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn check_end(&self, index: u64) -> Result<(), Error> {
        let end = self.end();
        if index >= end && end != u64::MAX {
            return Err(Error::BeyondEof { index, end });
        }
        Ok(())
    }

    /// Refuses a page that ends beyond the store's
    /// [`max_size`](StoreControl::max_size).
    #[inline]
    pub(crate) fn check_max(&self, index: u64) -> Result<(), Error> {
        if index >= self.max_pages && self.max_pages != u64::MAX {
            return Err(Error::BeyondMaxSize {
                index,
                max_size: self.max_size,
            });
        }
        Ok(())
    }

    /// The frame pool.
    pub fn pool(&self) -> &Arc<FramePool> {
        &self.pool
    }

    /// Pages in the map (up to date, loading, or left by a failed read).
    pub fn nr_pages(&self) -> u64 {
        self.nr_pages.load(Ordering::Relaxed)
    }

    /// Pages a truncate cut off while they were held whose holders have
    /// not all let go yet (their frames return to the pool at the last
    /// put; see [`PageRef::is_detached`]).
    pub fn nr_detached(&self) -> u64 {
        // Relaxed: a snapshot.
        self.detached.load(Ordering::Relaxed)
    }

    /// Whether a remover may unlink nodes that became empty: not while a
    /// detached page has holders, whose puts read their old slots. Acquire:
    /// pairs with the Release decrement of the last such put, after its
    /// last read of a slot. Called under the writer lock, under which a
    /// truncate counts a page it detaches before emptying its slot.
    pub(crate) fn may_unlink(&self) -> bool {
        self.detached.load(Ordering::Acquire) == 0
    }

    /// The put of a holder of a detached frame: the last one frees it.
    /// Out of line: kept off the put's hot path.
    #[cold]
    #[inline(never)]
    pub(crate) fn put_detached(&self, frame: crate::frame::FrameId) {
        if self.pool.orphan_put(frame) {
            self.pool.free(frame);
            // Release: this put's (and, through the orphan count's AcqRel,
            // every earlier holder's) reads of the old slot happen-before a
            // remover that sees the count drop and unlinks the node.
            self.detached.fetch_sub(1, Ordering::Release);
        }
    }
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

/// What [`PageMap::close`] could not do. Every frame was freed all the
/// same: the pages in `lost` are gone from the cache, their data not
/// written.
#[derive(Debug)]
pub struct CloseError {
    /// Every page that could not be written (index, error), all of them:
    /// this is the data lost, so no bound applies.
    pub lost: Vec<(u64, Error)>,
    /// A write error met since the last fsync by another write-back, as
    /// [`FsyncError::earlier`].
    pub earlier: Option<Error>,
    /// The store's sync failed: what it acknowledged may not survive a
    /// crash.
    pub sync: Option<StoreError>,
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "closing the page map failed:")?;
        if let Some((index, e)) = self.lost.first() {
            write!(
                f,
                " {} pages lost (first: page {index}: {e});",
                self.lost.len()
            )?;
        }
        if let Some(e) = &self.earlier {
            write!(f, " an earlier write failed: {e};")?;
        }
        if let Some(e) = &self.sync {
            write!(f, " syncing the store failed: {e};")?;
        }
        Ok(())
    }
}

impl core::error::Error for CloseError {}

/// A write-back that keeps every page it failed to write, with no bound
/// (close and drop: those pages are about to be lost).
#[derive(Default)]
struct Lost(Vec<(u64, Error)>);

impl WbPolicy for Lost {
    fn done(&mut self, index: u64, result: &Result<Wrote, Error>) {
        if let Err(e) = result {
            self.0.push((index, e.clone()));
        }
    }

    fn keep_errors(&self) -> bool {
        false // reported by the close (or logged by the drop) itself
    }
}

impl PageMap {
    /// Closes the file: [`fsync`](Self::fsync), then frees every frame.
    /// Unlike a drop, which writes back on a best-effort basis and can only
    /// log what it loses, this returns every page it could not write.
    ///
    /// Call it on the last handle: a map shared with others (a
    /// [`Flusher`](crate::Flusher), [`OwnedPageRef`]s, mappings, a
    /// reclaimer looking at its pages for a moment) is fsynced here and
    /// freed when the last of them lets go; what they dirty meanwhile is
    /// written back by that drop, as by any drop.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pagemap::{FramePool, MemStore, PageMap};
    ///
    /// let map = PageMap::new(Arc::new(FramePool::new(4).unwrap()), Arc::new(MemStore::new()));
    /// map.load(0).unwrap().write(0, b"bye").unwrap();
    /// map.close().unwrap();
    /// ```
    ///
    /// # Errors
    /// [`CloseError`]: the pages lost, an earlier write error not yet
    /// reported by an fsync, or the store's failed sync.
    pub fn close(self: Arc<Self>) -> Result<(), CloseError> {
        let mut lost = Lost::default();
        let FsyncError { earlier, sync, .. } = self.fsync_with(&mut lost);
        // The drop frees the frames; its write-back finds nothing dirty
        // unless another holder wrote since.
        drop(self);
        if lost.0.is_empty() && earlier.is_none() && sync.is_none() {
            Ok(())
        } else {
            Err(CloseError {
                lost: lost.0,
                earlier,
                sync,
            })
        }
    }
}

impl Drop for PageMap {
    /// Writes back dirty pages (best effort, and without a sync of the
    /// store: [`PageMap::close`] returns what it could not write, and
    /// syncs) and makes the store as long as the size if it is shorter,
    /// logging every page it could not write, whose data is lost,
    /// through the `log` facade (at most [`MAX_REPORTED_ERRORS`] lines, then
    /// a count); then returns every frame to the pool.
    fn drop(&mut self) {
        // No reclaimer can pin us once we are unregistered; wait for those
        // that did (a pin of this thread's own, if its reclaim dropped our
        // last handle, excepted). Acquire: pairs with the unpin's Release,
        // so their accesses to us happen before we free anything.
        self.pool.unregister(self.id);
        let mine = crate::frame::mine::pins_of(self.id);
        while self.reclaim_pins.load(Ordering::Acquire) > mine {
            #[cfg(all(feature = "std", not(pagemap_loom)))]
            std::thread::yield_now();
            #[cfg(not(all(feature = "std", not(pagemap_loom))))]
            crate::sync::spin_hint();
        }
        {
            let mut lost = Lost::default();
            self.writeback_with(.., &mut lost);
            // The log facade: a kernel has no stderr (and a library should
            // not print); the kernel's or the application's logger shows it.
            for (_, e) in lost.0.iter().take(MAX_REPORTED_ERRORS) {
                log::error!(
                    "pagemap: dropping page map #{}: {e}; that page's data is lost",
                    self.id
                );
            }
            if lost.0.len() > MAX_REPORTED_ERRORS {
                log::error!(
                    "pagemap: dropping page map #{}: {} pages could not be written; their data is lost",
                    self.id,
                    lost.0.len()
                );
            }
            if let Err(e) = self.persist_size_or_write() {
                log::error!(
                    "pagemap: dropping page map #{}: the store could not be made {} bytes long: {e}",
                    self.id,
                    self.size()
                );
            }
        }
        let guard = epoch::pin();
        let mut from = 0;
        while let Some((index, slot)) = self.tree.next_present(from, &guard) {
            let w = slot.load();
            assert_eq!(w.refs(), 0, "page map dropped with a held page");
            self.pool.free(w.present_frame());
            match index.checked_add(1) {
                Some(n) => from = n,
                None => break,
            }
        }
        // The pool's totals keep what this map counted.
        self.pool.stats.gone.lock().add(&self.stats());
    }
}

impl crate::frame::Evictor for PageMap {
    fn check(
        &self,
        index: u64,
        frame: crate::frame::FrameId,
        hits_told: bool,
    ) -> (crate::frame::Check, bool) {
        self.reclaim_check(index, frame, hits_told)
    }

    fn evict(
        &self,
        victims: &[(u64, crate::frame::FrameId)],
        wait: bool,
        report: &mut crate::ReclaimReport,
    ) {
        self.evict_chosen(victims, wait, report);
    }

    fn map_stats(&self) -> MapStats {
        self.stats()
    }

    fn pin(&self) {
        // Relaxed: taken under the registry's read lock, which orders it
        // before the drop's unregister (a write lock) and so before its wait.
        self.reclaim_pins.fetch_add(1, Ordering::Relaxed);
    }

    fn unpin(&self) {
        // Release: the reclaimer's accesses to the map happen before the
        // drop's Acquire load sees the count fall.
        self.reclaim_pins.fetch_sub(1, Ordering::Release);
    }
}
