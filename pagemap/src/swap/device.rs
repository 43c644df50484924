//! [`Swap`]: a swap store with its swap map and swap cache, and the two
//! protocols that move private frames through it: swap-out (the Zephyr
//! seed's eviction: select, unmap, page out, free) and swap-in (the seed's
//! page fault: page in, finalize), each with only the moving frame BUSY.
//!
//! Locks: none of its own. A swap-out holds its frame's BUSY bit (a lock
//! bit of the frame's flags word) from its start to its end, I/O included;
//! a swap-in holds the BUSY bit of the frame it reads into. Faults that find
//! a BUSY frame in the swap cache sleep on that bit (the frame's wait
//! bucket), holding nothing. No address-space lock, no global lock: two
//! pages move in parallel (the seed serialises all paging behind
//! `z_mm_paging_lock`; [`Swap::set_serialized`] brings that back, for the
//! benchmark).

use alloc::sync::Arc;

use super::slots::{Slot, SwapMap};
use super::state::MAX_LOCATIONS;
use super::store::{Location, SwapStore};
use crate::error::Error;
use crate::frame::{flags, FrameId, FramePool, PrivateFrame};
use crate::shootdown::ShootdownBatch;
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering};
use crate::PAGE_SIZE;

/// What a swap-out needs of the layer that maps private frames: the walk
/// from a frame back to the page table entries that name it (Linux's rmap
/// walk of an anonymous folio, `try_to_unmap`). vmr implements it over its
/// address spaces; the key is whatever the owner recorded with
/// [`FramePool::set_private_rmap`] (vmr: the virtual page number).
///
/// No method may take a lock that a fault holds while it allocates (an
/// address-space lock): a swap-out runs inside direct reclaim, in a
/// faulting thread.
pub trait AnonRmap: Send + Sync {
    /// Test-and-clears the accessed bits of the entries naming `frame`;
    /// whether any was set (Linux's `folio_referenced`).
    fn referenced(&self, key: u64, frame: FrameId) -> bool;

    /// Whether an entry of a locked (mlocked) mapping names `frame`: then
    /// reclaim never chooses it (Linux keeps such folios off the LRU).
    fn pinned(&self, key: u64, frame: FrameId) -> bool;

    /// Turns every entry that names `frame` into a swap entry for `loc`
    /// (not present: a fault on it calls [`Swap::lookup`]). For each entry:
    /// first [`Swap::dup`] of `loc` (the entry's count on the location;
    /// if it fails, leave the entry), then one atomic change of the entry
    /// that re-checks it still names `frame`, then, if it changed,
    /// [`Swap::unmapped`] with whether the old entry was dirty (if it did
    /// not, [`Swap::free_entry`] to undo the dup). Entries of a locked
    /// (mlocked) mapping are left as they are. Every translation of a
    /// changed entry is shot down (in `batch`, flushed by the caller) before
    /// the frame is reused. Returns whether an entry was left locked.
    fn try_to_unmap(
        &self,
        key: u64,
        frame: FrameId,
        loc: Location,
        swap: &Swap,
        batch: &mut ShootdownBatch,
    ) -> bool;
}

/// What [`Swap::lookup`] found for a swap entry's location.
#[derive(Debug)]
pub enum Lookup {
    /// The page is in memory, in this frame: a map reference for the
    /// caller's entry (turn it into the entry with
    /// [`PrivateFrame::into_raw`], then [`Swap::free_entry`] the location
    /// the entry held; dropping it instead gives the reference back).
    Cached(PrivateFrame),
    /// The page is being paged in or out: [`Swap::wait`] on the frame,
    /// holding no lock, then look again.
    Busy(FrameId),
    /// Not in memory: [`Swap::read_in`] it, holding no lock, then look
    /// again. (Also what a stale location, freed meanwhile, looks like:
    /// `read_in` then does nothing and the caller finds its entry changed.)
    Absent,
}

/// How a swap-out ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapOut {
    /// The page is in swap and its frame free; `written`: it was written
    /// (dirty, or without a clean copy), else dropped without I/O.
    Freed {
        /// Whether a page-out was needed.
        written: bool,
    },
    /// The frame was kept: BUSY with another move, gone, mapped by an
    /// entry the walk could not change (a copy-on-write in flight, a fork
    /// meanwhile), or pinned by a locked mapping.
    Kept,
}

/// Counters of a swap space (see [`Swap::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwapStats {
    /// Pages read from the store (swap-ins that completed).
    pub page_ins: u64,
    /// Pages written to the store.
    pub page_outs: u64,
    /// Frames freed by swap-outs: `clean` without I/O (a clean copy was in
    /// swap), `dirty` after a page-out.
    pub evicted_clean: u64,
    /// See `evicted_clean`.
    pub evicted_dirty: u64,
    /// Frames freed by swap-outs without I/O because `MADV_FREE` was
    /// advised and the page stayed clean (its entries read zeroes).
    pub lazy_freed: u64,
    /// Swap-outs that kept their frame.
    pub kept: u64,
    /// Faults that found their page in the swap cache.
    pub cache_hits: u64,
    /// Locations taken from a clean cached copy because the store was full.
    pub stolen: u64,
    /// Swap-outs refused because every location was in use.
    pub full: u64,
    /// Failed page-ins and page-outs.
    pub read_errors: u64,
    /// See `read_errors`.
    pub write_errors: u64,
    /// Locations in use now.
    pub in_use: u32,
    /// Locations of the store.
    pub locations: u32,
}

mod ctr {
    pub(super) const PAGE_INS: usize = 0;
    pub(super) const PAGE_OUTS: usize = 1;
    pub(super) const CLEAN: usize = 2;
    pub(super) const DIRTY: usize = 3;
    pub(super) const KEPT: usize = 4;
    pub(super) const HITS: usize = 5;
    pub(super) const STOLEN: usize = 6;
    pub(super) const FULL: usize = 7;
    pub(super) const READ_ERR: usize = 8;
    pub(super) const WRITE_ERR: usize = 9;
    pub(super) const LAZY: usize = 10;
    pub(super) const N: usize = 11;
}

/// A swap space: a [`SwapStore`] of page-sized locations, which of them
/// are in use and by how many swap entries, and the swap cache (the frame
/// that holds a location's page while it is being paged in or out, or
/// while a clean copy stays in swap).
///
/// The Zephyr seed's backing-store interface maps onto it as follows:
/// `location_get` is [`location_get`](Self::location_get) (the same
/// location again while the frame has a clean copy in swap; a full store
/// steals the location of a clean cached copy before it gives up),
/// `location_free` is the last [`free_entry`](Self::free_entry) (or a
/// swap-out or swap-in that ends with no entry left), `page_out` and
/// `page_in` are [`SwapStore`]'s, and `finalize` is the end of
/// [`read_in`](Self::read_in) (the frame is marked BACKED: its copy in
/// swap is clean).
///
/// ```
/// use std::sync::Arc;
/// use pagemap::swap::{Lookup, MemSwap, Swap};
/// use pagemap::FramePool;
///
/// let pool = Arc::new(FramePool::new(4).unwrap());
/// let swap = Swap::new(pool.clone(), Arc::new(MemSwap::new(16))).unwrap();
/// assert_eq!(swap.locations(), 16);
/// assert!(matches!(swap.lookup(pagemap::swap::Location::new(3)), Lookup::Absent));
/// ```
pub struct Swap {
    pool: Arc<FramePool>,
    store: Arc<dyn SwapStore>,
    map: SwapMap,
    ctr: [AtomicU64; ctr::N],
    /// All paging behind one mutex (the seed's `z_mm_paging_lock`), for the
    /// benchmark's baseline.
    serialized: AtomicBool,
    paging_lock: Mutex<()>,
    #[cfg(all(feature = "std", not(pagemap_loom)))]
    hist: Hists,
}

#[cfg(all(feature = "std", not(pagemap_loom)))]
struct Hists {
    page_in: crate::frame::LatencyHist,
    page_out: crate::frame::LatencyHist,
}

impl core::fmt::Debug for Swap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Swap")
            .field("locations", &self.locations())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Swap {
    /// A swap space over `store`'s slots, for `pool`'s private frames.
    ///
    /// # Errors
    /// [`Error::InvalidCapacity`] if the store has more than 2^24 slots
    /// (64 GiB: a location is 24 bits of a frame's state word) or none.
    pub fn new(pool: Arc<FramePool>, store: Arc<dyn SwapStore>) -> Result<Arc<Swap>, Error> {
        let n = store.slots();
        if n == 0 || n > MAX_LOCATIONS {
            return Err(Error::InvalidCapacity {
                requested: n as usize,
                max: MAX_LOCATIONS as usize,
            });
        }
        Ok(Arc::new(Swap {
            pool,
            store,
            map: SwapMap::new(n),
            ctr: core::array::from_fn(|_| AtomicU64::new(0)),
            serialized: AtomicBool::new(false),
            paging_lock: Mutex::new(()),
            #[cfg(all(feature = "std", not(pagemap_loom)))]
            hist: Hists {
                page_in: crate::frame::LatencyHist::new(),
                page_out: crate::frame::LatencyHist::new(),
            },
        }))
    }

    /// The pool whose private frames it pages.
    pub fn pool(&self) -> &Arc<FramePool> {
        &self.pool
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SwapStore> {
        &self.store
    }

    /// Locations (pages) of the store.
    pub fn locations(&self) -> u32 {
        self.map.len()
    }

    /// Swap entries that name `loc` now (0 for a free or bad location).
    pub fn entries(&self, loc: Location) -> u32 {
        self.slot(loc).map_or(0, |s| s.entries())
    }

    /// The frame caching `loc`'s page now, if any.
    pub fn cached_frame(&self, loc: Location) -> Option<FrameId> {
        self.slot(loc).and_then(|s| FrameId::new(s.frame()))
    }

    /// Serialises every swap-in and swap-out behind one mutex held across
    /// the I/O (the seed's `z_mm_paging_lock`), or stops doing so. For the
    /// benchmark's baseline: it makes faults of different pages wait for
    /// each other's I/O.
    pub fn set_serialized(&self, on: bool) {
        // Relaxed: a mode, read by each paging operation.
        self.serialized.store(on, Ordering::Relaxed);
    }

    fn paging_guard(&self) -> Option<crate::sync::MutexGuard<'_, ()>> {
        self.serialized
            .load(Ordering::Relaxed)
            .then(|| self.paging_lock.lock())
    }

    fn slot(&self, loc: Location) -> Option<Slot> {
        (loc.get() < self.locations()).then(|| self.map.get(loc.get()))
    }

    fn count(&self, c: usize) {
        // Relaxed: statistics.
        self.ctr[c].fetch_add(1, Ordering::Relaxed);
    }

    /// Counters now.
    pub fn stats(&self) -> SwapStats {
        let g = |c: usize| self.ctr[c].load(Ordering::Relaxed);
        SwapStats {
            page_ins: g(ctr::PAGE_INS),
            page_outs: g(ctr::PAGE_OUTS),
            evicted_clean: g(ctr::CLEAN),
            evicted_dirty: g(ctr::DIRTY),
            lazy_freed: g(ctr::LAZY),
            kept: g(ctr::KEPT),
            cache_hits: g(ctr::HITS),
            stolen: g(ctr::STOLEN),
            full: g(ctr::FULL),
            read_errors: g(ctr::READ_ERR),
            write_errors: g(ctr::WRITE_ERR),
            in_use: self.map.in_use(),
            locations: self.locations(),
        }
    }

    /// Histograms of page-in and page-out time, in nanoseconds (the
    /// seed's `CONFIG_DEMAND_PAGING_TIMING_HISTOGRAM`; the victim-selection
    /// one is the pool's: [`PoolStats::select_ns`](crate::PoolStats::select_ns)).
    #[cfg(all(feature = "std", not(pagemap_loom)))]
    pub fn histograms(&self) -> SwapHistograms {
        SwapHistograms {
            page_in_ns: self.hist.page_in.snapshot(),
            page_out_ns: self.hist.page_out.snapshot(),
        }
    }

    // ---- swap entries ----------------------------------------------------

    /// One more swap entry names `loc` (a swap-out's unmap, before it
    /// changes the entry; fork, copying an entry).
    ///
    /// # Errors
    /// [`Error::RefcountOverflow`] (index = the location) if `loc` is free,
    /// out of range, or already counts 2^24 - 1 entries; nothing changed.
    pub fn dup(&self, loc: Location) -> Result<(), Error> {
        if loc.get() >= self.locations() {
            return Err(Error::RefcountOverflow {
                index: u64::from(loc.get()),
            });
        }
        self.map
            .update(loc.get(), Slot::dup)
            .map(|_| ())
            .map_err(|_| Error::RefcountOverflow {
                index: u64::from(loc.get()),
            })
    }

    /// A swap entry naming `loc` is gone (munmap, `MADV_DONTNEED`, a
    /// truncate's zap, a fault that mapped the page back, an undone
    /// [`dup`](Self::dup)). The last entry frees the location (the seed's
    /// `location_free`), and with it a frame that only the swap cache
    /// kept.
    ///
    /// # Panics
    /// If `loc` counts no entry (a second free of one entry).
    pub fn free_entry(&self, loc: Location) {
        assert!(loc.get() < self.locations(), "{loc} is out of range");
        let old = self
            .map
            .update(loc.get(), |s| Some(s.drop_entry()))
            .expect("drop_entry always applies");
        let new = old.drop_entry();
        if new == Slot(0) {
            self.store.discard(loc);
        } else if new.entries() == 0 {
            // A frame is cached and no entry needs it any more: free it
            // unless someone maps it or moves it.
            if let Some(f) = FrameId::new(new.frame()) {
                self.drop_cache_only(loc, f);
            }
        }
    }

    /// A swap-out's unmap changed an entry that named `frame` into a swap
    /// entry: the entry's map reference goes (the swap cache keeps the
    /// frame). `dirty`: the old entry's dirty bit (the frame differs from
    /// any copy in swap).
    ///
    /// # Panics
    /// If the frame is not in the swap cache (only a swap-out in progress,
    /// which cached it, may call this).
    pub fn unmapped(&self, frame: FrameId, dirty: bool) {
        let old = self
            .pool
            .private_update(frame, |s| {
                let s = s.put();
                Some(if dirty { s.clear_backed() } else { s })
            })
            .expect("put always applies");
        assert!(
            old.cached() && old.refs() > 0,
            "unmapped({frame:?}) of a frame no swap-out holds ({old:?})"
        );
    }

    // ---- swap-in ---------------------------------------------------------

    /// Looks up the page of swap entry `loc` (a fault on a non-present entry
    /// that holds it): see [`Lookup`].
    pub fn lookup(&self, loc: Location) -> Lookup {
        let Some(slot) = self.slot(loc) else {
            return Lookup::Absent;
        };
        let Some(f) = FrameId::new(slot.frame()) else {
            return Lookup::Absent;
        };
        // A reference first, valid only while the frame is cached at `loc`
        // (so a frame freed and reused meanwhile is refused), then BUSY:
        // SeqCst both, against a swap-out's BUSY then references (see
        // `swap::state`).
        if self
            .pool
            .private_update(f, |s| s.get_cached(loc.get()))
            .is_err()
        {
            return Lookup::Absent; // gone meanwhile: look again
        }
        let handle = PrivateFrame {
            pool: self.pool.clone(),
            id: f,
        };
        if self.pool.busy(f) {
            drop(handle); // the mover keeps it; we wait and look again
            return Lookup::Busy(f);
        }
        self.count(ctr::HITS);
        Lookup::Cached(handle)
    }

    /// Sleeps until frame `f` is not BUSY (its page-in or page-out ended).
    /// Hold no lock: the mover may need it.
    pub fn wait(&self, f: FrameId) {
        self.pool.wait_bit_clear(f, flags::BUSY);
    }

    /// Reads `loc`'s page into a new frame and puts it in the swap cache
    /// (the seed's page-in and finalize). Does nothing if the page is
    /// cached already or `loc` is no longer in use. Call it holding no lock
    /// (it allocates, which may reclaim, and waits for the I/O); then look
    /// the entry up again.
    ///
    /// # Errors
    /// [`Error::SwapRead`] if the store fails (the data stays in swap;
    /// nothing changed: a retry reads it again); [`Error::PoolExhausted`]
    /// if no frame can be had.
    pub fn read_in(&self, loc: Location) -> Result<(), Error> {
        match self.slot(loc) {
            Some(s) if s.used() && s.entries() > 0 && s.frame() == 0 => {}
            _ => return Ok(()),
        }
        // Allocated before the serialising lock is taken: the allocation
        // may reclaim, and reclaim's swap-outs take that lock (not
        // reentrant: a full pool deadlocked the faulting thread). The I/O
        // below is still under it.
        let frame = self.pool.alloc_private()?;
        let f = frame.id();
        // Fresh and ours: BUSY before it is visible in the cache, and
        // before the wait for the lock. (A swap-out that took this frame as
        // a stale victim from its earlier life may hold BUSY for a moment:
        // it finds the frame not in the policy and lets go.)
        while !self.pool.try_lock_busy(f) {
            self.wait(f);
        }
        let _serial = self.paging_guard();
        self.pool
            .private_update(f, |s| s.cache(loc.get(), false))
            .expect("a fresh frame is not cached");
        if self.map.update(loc.get(), |s| s.cache(f.get())).is_err() {
            // Someone else reads it, or it was freed: theirs, or nothing.
            self.abandon(frame);
            return Ok(());
        }
        #[cfg(all(feature = "std", not(pagemap_loom)))]
        let t = std::time::Instant::now();
        let mut buf = alloc::boxed::Box::new([0u8; PAGE_SIZE]);
        // A page dropped after MADV_FREE reads zeroes, without I/O.
        let r = if self.map.get(loc.get()).zero() {
            Ok(())
        } else {
            self.store.page_in(loc, &mut buf)
        };
        #[cfg(all(feature = "std", not(pagemap_loom)))]
        self.hist.page_in.record(t.elapsed());
        if let Err(source) = r {
            self.count(ctr::READ_ERR);
            let out = self.map.update(loc.get(), |s| s.uncache(f.get()));
            if out.is_ok_and(|old| old.entries() == 0) {
                self.store.discard(loc);
            }
            self.abandon(frame);
            return Err(Error::SwapRead {
                location: loc.get(),
                source,
            });
        }
        frame.write_page(&buf);
        self.count(ctr::PAGE_INS);
        // Finalize: the copy in swap is clean; the page joins the policy so
        // that reclaim can drop it again (without I/O while it stays clean).
        self.pool
            .private_update(f, |s| Some(s.set_backed()))
            .expect("set_backed always applies");
        self.pool.policy_add(f);
        self.pool.unlock_bit(f, flags::BUSY);
        // Our reference goes; the swap cache keeps the frame for the faults
        // (or frees it now if every entry went meanwhile).
        drop(frame);
        if self.slot(loc).is_some_and(|s| s.entries() == 0) {
            self.drop_cache_only(loc, f);
        }
        Ok(())
    }

    /// Gives up a fresh frame of a swap-in that did not get into the cache
    /// or whose read failed (BUSY held, cached in its state only).
    fn abandon(&self, frame: PrivateFrame) {
        let f = frame.id();
        self.pool
            .private_update(f, |s| Some(s.uncache()))
            .expect("uncache always applies");
        self.pool.unlock_bit(f, flags::BUSY);
        drop(frame); // the last reference: freed
    }

    /// Frees frame `f`, which the swap cache keeps for `loc`, if nothing
    /// else does: no map reference, no entry of `loc`, nobody moving it.
    /// (A mover that holds BUSY checks the same at its end.)
    fn drop_cache_only(&self, loc: Location, f: FrameId) {
        let slot = self.map.get(loc.get());
        if slot.entries() != 0 || slot.frame() != f.get() {
            return; // entries need it (or it left): the cache keeps it
        }
        // A reference (valid only while cached at `loc`: a frame freed and
        // reused meanwhile is refused), then BUSY.
        if self
            .pool
            .private_update(f, |s| s.get_cached(loc.get()))
            .is_err()
        {
            return;
        }
        if self.pool.try_lock_busy(f) {
            let s = self.pool.private_state(f);
            let slot = self.map.get(loc.get());
            if s.refs() == 1 && slot.entries() == 0 && slot.frame() == f.get() {
                self.leave_cache_unused(loc, f);
            }
            self.pool.unlock_bit(f, flags::BUSY);
        }
        // Our reference goes without the drop hook (no recursion): freed
        // if it left the cache, else kept for whoever needs it.
        if self.pool.private_put(f) {
            self.pool.free(f);
        }
    }

    /// Frame `f` (BUSY, held by the caller) leaves the swap cache at `loc`,
    /// which no swap entry names (checked by the caller under BUSY): the
    /// location is freed, its contents discarded.
    fn leave_cache_unused(&self, loc: Location, f: FrameId) {
        let old = self
            .map
            .update(loc.get(), |w| w.uncache(f.get()))
            .expect("checked by the caller, under BUSY");
        debug_assert_eq!(old.entries(), 0, "a location in use left the cache");
        self.store.discard(loc);
        self.pool
            .private_update(f, |s| Some(s.uncache()))
            .expect("uncache always applies");
    }

    /// The last map reference to private frame `f` went and the swap cache
    /// keeps it: free it (and its location) if no swap entry needs it.
    pub(crate) fn cache_dropped(&self, f: FrameId) {
        let s = self.pool.private_state(f);
        if s.cached() && s.refs() == 0 {
            self.drop_cache_only(Location::new(s.location()), f);
        }
    }

    // ---- write faults ----------------------------------------------------

    /// A write fault on private frame `f`, whose entry holds a reference:
    /// whether the writer may write it in place (Linux's
    /// `wp_can_reuse_anon_folio`): its reference is the only one and no
    /// swap entry shares the page through the swap cache. Such a frame
    /// leaves the swap cache first (its copy in swap is about to go stale;
    /// the location is freed). `false`: copy it. May sleep while a
    /// swap-out of the frame is under way (hold no lock a swap-out takes;
    /// the caller's entry should be locked, which the swap-out passes by).
    pub fn make_exclusive(&self, f: FrameId) -> bool {
        // A swap-out isolating the frame adds a passing reference (it lets
        // go at once, finding our entry locked or the frame BUSY): a count
        // above 1 is looked at again a few times before the writer copies
        // (a needless copy failed for want of a frame in a two-frame pool:
        // break13). A real sharer (fork) keeps it above 1.
        for attempt in 0..8 {
            if attempt > 0 {
                #[cfg(all(feature = "std", not(pagemap_loom)))]
                std::thread::yield_now();
                #[cfg(not(all(feature = "std", not(pagemap_loom))))]
                crate::sync::spin_hint();
            }
            if let Some(ok) = self.try_make_exclusive(f) {
                return ok;
            }
        }
        false
    }

    /// One look of [`make_exclusive`](Self::make_exclusive): `None` if the
    /// count was above 1 (look again).
    fn try_make_exclusive(&self, f: FrameId) -> Option<bool> {
        let s = self.pool.private_state(f);
        if s.refs() != 1 {
            return None;
        }
        if !s.cached() {
            // Only a holder adds map references (fork; the cache is the
            // other way in, and the frame is not cached): it stays 1.
            return Some(true);
        }
        // Cached: a fault may take a reference from the cache meanwhile;
        // BUSY keeps swap-ins, swap-outs and other takers' use out. A
        // swap-out holding it now passes the caller's (locked) entry by and
        // lets go: wait for it rather than copy.
        while !self.pool.try_lock_busy(f) {
            self.wait(f);
        }
        let s = self.pool.private_state(f);
        let loc = s.location();
        let slot = self.map.get(loc);
        let ok = s.refs() == 1 && s.cached() && slot.entries() == 0 && slot.frame() == f.get();
        if ok {
            self.leave_cache_unused(Location::new(loc), f);
        }
        self.pool.unlock_bit(f, flags::BUSY);
        Some(ok || (!s.cached() && s.refs() == 1))
    }

    /// Whether the holder of a reference to private frame `f` may make its
    /// entry writable without a copy now, with no side effect (a read
    /// fault): its reference is the only one and the frame is not in the
    /// swap cache. A write fault asks [`make_exclusive`](Self::make_exclusive).
    pub fn may_write_in_place(&self, f: FrameId) -> bool {
        let s = self.pool.private_state(f);
        s.refs() == 1 && !s.cached()
    }

    /// `MADV_FREE` of private frame `f`, whose entry the caller holds and
    /// whose dirty bits it has just cleared (and shot down): if the frame
    /// is the caller's alone, a swap-out may now drop it without writing it
    /// (its swap entries then read zeroes), unless an entry is dirty again
    /// by then. Returns whether it was marked (a shared frame is left as it
    /// is, as Linux does).
    pub fn lazy_free(&self, f: FrameId) -> bool {
        if !self.make_exclusive(f) {
            return false;
        }
        self.pool.private_update(f, |s| s.set_lazy()).is_ok()
    }

    // ---- swap-out --------------------------------------------------------

    /// The seed's `location_get` for frame `f` (BUSY, held by the caller):
    /// its location if it is cached (with whether the copy there is
    /// clean), else a free one, cached now; when every location is in use,
    /// the location of a clean cached copy whose frame nobody moves is
    /// stolen (that frame forgets its copy) before giving up.
    ///
    /// # Errors
    /// [`Error::SwapFull`]: every location is in use by swap entries or by
    /// frames busy or dirty; nothing changed.
    pub fn location_get(&self, f: FrameId) -> Result<(Location, bool), Error> {
        let s = self.pool.private_state(f);
        if s.cached() {
            return Ok((Location::new(s.location()), s.backed()));
        }
        let loc = match self.map.alloc(f.get()) {
            Some(loc) => loc,
            None => self.steal(f).ok_or_else(|| {
                self.count(ctr::FULL);
                Error::SwapFull {
                    locations: self.locations(),
                }
            })?,
        };
        self.pool
            .private_update(f, |s| s.cache(loc, false))
            .expect("checked not cached, under BUSY");
        Ok((Location::new(loc), false))
    }

    /// Takes the location of a clean cached copy with no swap entry for
    /// frame `f` (the seed's store-full path): that frame stays mapped and
    /// forgets its copy (BACKED and CACHED cleared).
    fn steal(&self, f: FrameId) -> Option<u32> {
        for loc in 0..self.locations() {
            let slot = self.map.get(loc);
            let Some(g) = FrameId::new(slot.frame()) else {
                continue;
            };
            if slot.entries() != 0 || g == f {
                continue;
            }
            if self.pool.private_update(g, |s| s.get_cached(loc)).is_err() {
                continue;
            }
            let handle = PrivateFrame {
                pool: self.pool.clone(),
                id: g,
            };
            if !self.pool.try_lock_busy(g) {
                continue;
            }
            let gs = self.pool.private_state(g);
            let now = self.map.get(loc);
            // Only a clean copy of a frame someone maps (the frame keeps
            // the data; a cache-only frame would be lost with it).
            let ok = gs.backed() && gs.refs() > 1 && now.entries() == 0 && now.frame() == g.get();
            if ok {
                self.map
                    .update(loc, |w| {
                        (w.frame() == g.get() && w.entries() == 0).then_some(Slot(0).take(f.get())?)
                    })
                    .expect("checked above, under g's BUSY");
                self.pool
                    .private_update(g, |s| Some(s.uncache()))
                    .expect("uncache always applies");
            }
            self.pool.unlock_bit(g, flags::BUSY);
            drop(handle);
            if ok {
                self.count(ctr::STOLEN);
                return Some(loc);
            }
        }
        None
    }

    /// Pages private frame `f` out (the seed's eviction of one page): takes
    /// it BUSY, gets its location, turns every entry naming it into a swap
    /// entry through `rmap` (one shootdown per address space), writes it to
    /// the store unless a clean copy is there and no entry was dirty, then
    /// frees the frame. The frame is kept (the swap entries made meanwhile
    /// find it in the swap cache) if an entry could not be changed or a new
    /// reference appeared.
    ///
    /// # Errors
    /// [`Error::SwapFull`] (nothing changed); [`Error::SwapWrite`] if the
    /// page-out failed: the page stays in memory, dirty (its copy in swap
    /// forgotten), every swap entry made finds it in the cache: no data is
    /// lost.
    pub fn swap_out(&self, f: FrameId, rmap: &dyn AnonRmap) -> Result<SwapOut, Error> {
        let mut out = [Ok(SwapOut::Kept)];
        self.swap_out_batch(&[f], rmap, &mut out);
        let [r] = out;
        r
    }

    /// [`swap_out`](Self::swap_out) of several frames (at most
    /// [`RECLAIM_BATCH`](crate::RECLAIM_BATCH) at once: more are done in
    /// batches of that size) with one shootdown per address space per
    /// batch: every frame is taken BUSY and unmapped first, the TLBs of
    /// each space flushed once, then each is written if it must be and
    /// freed. `out[i]` is frame `i`'s result (`out` as long as `frames`).
    pub fn swap_out_batch(
        &self,
        frames: &[FrameId],
        rmap: &dyn AnonRmap,
        out: &mut [Result<SwapOut, Error>],
    ) {
        assert_eq!(frames.len(), out.len(), "one result per frame");
        let _serial = self.paging_guard();
        for (frames, out) in frames
            .chunks(crate::RECLAIM_BATCH)
            .zip(out.chunks_mut(crate::RECLAIM_BATCH))
        {
            let mut taken: [Option<Prepared>; crate::RECLAIM_BATCH] =
                core::array::from_fn(|_| None);
            let mut batch = ShootdownBatch::new();
            for ((&f, r), t) in frames.iter().zip(out.iter_mut()).zip(taken.iter_mut()) {
                match self.prepare_out(f, rmap, &mut batch) {
                    Ok(Some(p)) => *t = Some(p),
                    Ok(None) => *r = Ok(SwapOut::Kept),
                    Err(e) => *r = Err(e),
                }
            }
            // Every translation of every unmapped entry goes before any
            // frame is written or freed: one shootdown per address space.
            batch.flush();
            for (t, r) in taken.iter_mut().zip(out.iter_mut()) {
                if let Some(p) = t.take() {
                    *r = self.finish_out(p);
                }
            }
        }
    }

    /// A swap-out's first half: isolate frame `f`, take it BUSY, give it a
    /// location and turn its entries into swap entries (their shootdowns
    /// into `batch`). `None`: kept without change (busy, gone, not in the
    /// policy).
    fn prepare_out(
        &self,
        f: FrameId,
        rmap: &dyn AnonRmap,
        batch: &mut ShootdownBatch,
    ) -> Result<Option<Prepared>, Error> {
        // Isolate: a reference of our own, valid only if the frame is a
        // live private frame (mapped or cached), so it cannot be freed
        // under us; then BUSY.
        let live = self.pool.private_update(f, |s| {
            if s.refs() > 0 || s.cached() {
                s.share(u64::MAX)
            } else {
                None
            }
        });
        // (A free or page-cache frame's state word is 0: refused.)
        if live.is_err() {
            return Ok(None);
        }
        let handle = PrivateFrame {
            pool: self.pool.clone(),
            id: f,
        };
        if !self.pool.try_lock_busy(f) {
            self.count(ctr::KEPT);
            return Ok(None);
        }
        // Only a frame its owner made evictable (in the policy): a victim
        // chosen in an earlier life of the frame, freed and allocated again
        // meanwhile, may be a fresh frame not yet published (a swap-in's,
        // a fault's), which must not be cached or moved.
        if self.pool.flags(f) & flags::LRU == 0 {
            self.count(ctr::KEPT);
            self.pool.unlock_bit(f, flags::BUSY);
            return Ok(None);
        }
        let (_, key) = self.pool.owner(f);
        // A pinned (mlocked) page is refused before it takes a location
        // (break13: refused page-outs of locked pages kept theirs).
        if rmap.pinned(key, f) {
            self.count(ctr::KEPT);
            self.pool.unlock_bit(f, flags::BUSY);
            return Ok(None);
        }
        let (loc, _) = match self.location_get(f) {
            Ok(l) => l,
            Err(e) => {
                self.pool.unlock_bit(f, flags::BUSY);
                return Err(e);
            }
        };
        let locked = rmap.try_to_unmap(key, f, loc, self, batch);
        Ok(Some(Prepared {
            handle,
            loc,
            locked,
        }))
    }

    /// A swap-out's second half, after the shootdown of its batch: keep
    /// the frame if a reference appeared or an entry was locked; else write
    /// it unless a clean copy is in swap (or drop it unwritten after
    /// `MADV_FREE`), and free it.
    fn finish_out(&self, p: Prepared) -> Result<SwapOut, Error> {
        let Prepared {
            handle,
            loc,
            locked,
        } = p;
        let f = handle.id();
        // Our reference is the last one (SeqCst, after our BUSY: a fault
        // that took one from the cache either shows here or saw BUSY).
        let s = self.pool.private_state(f);
        if locked || s.refs() != 1 {
            self.count(ctr::KEPT);
            // No swap entry made and no clean copy there: the location is
            // given back (a refused page-out changes nothing). Under BUSY,
            // so no fault takes the frame from the cache meanwhile, and no
            // entry can name the location (none was made).
            let slot = self.map.get(loc.get());
            if !s.backed() && slot.entries() == 0 && slot.frame() == f.get() {
                self.leave_cache_unused(loc, f);
            }
            self.pool.unlock_bit(f, flags::BUSY);
            drop(handle);
            return Ok(SwapOut::Kept);
        }
        if s.lazy() {
            // MADV_FREE and no dirty entry since: dropped unwritten; its
            // swap entries read zeroes (Linux's lazyfree discard).
            self.map
                .update(loc.get(), |w| Some(w.set_zero()))
                .expect("set_zero always applies");
        }
        let written = !s.backed() && !s.lazy();
        if written {
            #[cfg(all(feature = "std", not(pagemap_loom)))]
            let t = std::time::Instant::now();
            let mut buf = alloc::boxed::Box::new([0u8; PAGE_SIZE]);
            // Nobody writes it: every entry is gone and shot down, and new
            // ones come only through the cache, which BUSY holds off.
            handle.read_page(&mut buf);
            let r = self.store.page_out(loc, &buf);
            #[cfg(all(feature = "std", not(pagemap_loom)))]
            self.hist.page_out.record(t.elapsed());
            if let Err(source) = r {
                self.count(ctr::WRITE_ERR);
                self.pool.unlock_bit(f, flags::BUSY);
                drop(handle); // stays cached (and dirty: not BACKED)
                return Err(Error::SwapWrite {
                    location: loc.get(),
                    source,
                });
            }
            // Written: its entries read it from the store, not zeroes (a
            // page read back from a zero location and written again).
            self.map
                .update(loc.get(), |w| Some(w.clear_zero()))
                .expect("clear_zero always applies");
            self.count(ctr::PAGE_OUTS);
        }
        // The page is in swap: out of the cache (the location is freed if
        // every entry went meanwhile), then the frame.
        let old = self
            .map
            .update(loc.get(), |w| w.uncache(f.get()))
            .expect("cached at loc, under BUSY");
        if old.entries() == 0 {
            self.store.discard(loc);
        }
        let before = self
            .pool
            .private_update(f, |s| Some(s.uncache()))
            .expect("uncache always applies");
        self.pool.unlock_bit(f, flags::BUSY);
        drop(handle); // the last reference: freed, unless ...
        if before.refs() > 1 {
            // ... a fault took a reference from the cache after our check
            // (its lookup read the cache before we left it): the page is in
            // swap, and in this frame until the fault maps it (it read BUSY
            // after we let go) or lets go (it saw BUSY: its put frees it).
            // Not freed by us: reported kept (loom: vmr_swap_pin_vs_evict).
            self.count(ctr::KEPT);
            return Ok(SwapOut::Kept);
        }
        self.count(if s.lazy() {
            ctr::LAZY
        } else if written {
            ctr::DIRTY
        } else {
            ctr::CLEAN
        });
        Ok(SwapOut::Freed { written })
    }
}

/// A frame between the two halves of a swap-out: BUSY, cached at `loc`,
/// its entries made swap entries (`locked`: one could not be).
struct Prepared {
    handle: PrivateFrame,
    loc: Location,
    locked: bool,
}

/// Page-in and page-out latency histograms of a [`Swap`], in nanoseconds.
#[cfg(all(feature = "std", not(pagemap_loom)))]
#[derive(Clone, Debug)]
pub struct SwapHistograms {
    /// Store reads of swap-ins.
    pub page_in_ns: hdrhistogram::Histogram<u64>,
    /// Store writes of swap-outs.
    pub page_out_ns: hdrhistogram::Histogram<u64>,
}
