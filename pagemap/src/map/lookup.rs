//! Lookups and loads: the lock-free hit path (`find`, `take`), the miss path
//! (insert under the writer lock, fill from the store with no lock held), and
//! waiting for a page another loader is reading.

use crate::error::Error;
use crate::frame::{flags, FrameId};
use crate::slot::{self, Refused, Slot, SlotWord};
use crate::sync::{epoch, Ordering};

use super::{PageMap, PageRef};
use crate::PAGE_SIZE;

/// A page of zeroes to copy from (no 4 KiB array built on the stack per use).
static ZERO_PAGE: [u8; PAGE_SIZE] = [0; PAGE_SIZE];

impl PageMap {
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
    /// For unmappers (munmap, mprotect, a
    /// [`Mapper::clean`](crate::Mapper::clean)) that must hold the page while
    /// they move a dirty bit from an entry to it: the hold is taken from the
    /// reserve above [`slot::MAX_REFS`], so it succeeds even while users
    /// hold the page at their limit, and it never waits. Such a hold must end
    /// within the operation that took it.
    ///
    /// # Panics
    /// If the reserve ([`slot::MAX_HELD`]) is exhausted: more than 8 million
    /// short holds of one page at once means some caller keeps them.
    pub fn find_frame(&self, index: u64, frame: FrameId) -> Option<PageRef<'_>> {
        match self.take(index, false, slot::Limit::Reserved) {
            Ok(page) => page.filter(|p| p.frame == frame),
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
            return self.miss(index);
        };
        match slot.get_fast(allow_loading, limit) {
            Ok(word) => {
                if limit == slot::Limit::User && !word.is_loading() {
                    self.hit(word);
                }
                Ok(Some(self.page_ref(slot, word, index)))
            }
            Err(Refused::Overflow) => Err(Error::RefcountOverflow { index }),
            // Our refused count was detached with the page: put it there.
            Err(Refused::Detached(frame)) => {
                self.put_detached(frame);
                self.miss(index)
            }
            Err(_) => self.miss(index),
        }
    }

    /// A user's hit: counted (one Relaxed add to this thread's shard), and
    /// told to a policy that tracks every access (exact LRU).
    #[inline]
    fn hit(&self, word: SlotWord) {
        self.stats.add(crate::frame::map_ctr::HITS, 1);
        self.pool.policy_hit(word);
    }

    /// A lookup's miss: `None`, or the refusal of a page no store write
    /// could reach (one compare, on the miss path only).
    #[inline]
    fn miss(&self, index: u64) -> Result<Option<PageRef<'_>>, Error> {
        self.check_max(index)?;
        Ok(None)
    }

    /// Takes a reference with the transition `f`.
    #[inline]
    pub(super) fn get(
        &self,
        index: u64,
        f: impl FnMut(SlotWord) -> Result<SlotWord, Refused>,
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
    pub(crate) fn page_ref<'a>(&'a self, slot: &Slot, word: SlotWord, index: u64) -> PageRef<'a> {
        // SAFETY: we hold a count on this slot, so it is non-empty, so its
        // leaf is never unlinked (only empty nodes are) and lives as long as
        // the map, which `'a` borrows. The epoch guard is no longer needed.
        let slot: &'a Slot = unsafe { &*(slot as *const Slot) };
        let frame = word.frame().expect("held slot has a frame");
        // The insert set the owner before publishing (Akaros did not: defect 2).
        // A truncate detaching the page meanwhile reuses the index word for
        // its holder count, after setting DETACHED (see `FramePool::owner`).
        debug_assert!(
            {
                let (owner, at) = self.pool.owner(frame);
                owner == self.id && (at == index || self.pool.flags(frame) & flags::DETACHED != 0)
            },
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
    /// waiter of that read, with the store's errno; the page is left
    /// unlocked (a later `load` retries). A page that ends beyond the
    /// store's [`max_size`](crate::StoreControl::max_size) is refused
    /// ([`Error::BeyondMaxSize`]), as [`find`](Self::find) refuses it.
    pub fn load(&self, index: u64) -> Result<PageRef<'_>, Error> {
        self.load_with(index, false, false)
    }

    /// [`load`](Self::load); `invalidate_held`: the caller holds the
    /// invalidate lock (an extending `write_at` holds it exclusively), so a
    /// miss must not take it again (it is not recursive: that would wait
    /// for itself). `fresh`: the page holds no byte of the file (it lies
    /// wholly at or past the size an extending write started from), so a
    /// miss zeroes the frame instead of reading the store (Linux's
    /// `write_begin` does not read a page the write will fill).
    pub(crate) fn load_with(
        &self,
        index: u64,
        invalidate_held: bool,
        fresh: bool,
    ) -> Result<PageRef<'_>, Error> {
        // The store's limit first: such a page can never exist, whatever
        // the size becomes.
        self.check_max(index)?;
        self.check_end(index)?;
        // The hit: no lock, no allocation.
        if let Some(page) = self.take(index, true, slot::Limit::User)? {
            return self.wait_uptodate(page, invalidate_held);
        }
        // The miss: under the invalidate lock, shared, from the insert to
        // the end of the read, so a hole punch (exclusive) sees either the
        // page cached or the store already punched, never a read of the
        // old bytes landing in between (Linux's `filemap_create_folio`).
        let _invalidate = (!invalidate_held).then(|| self.invalidate_lock.read());
        loop {
            if let Some(page) = self.take(index, true, slot::Limit::User)? {
                return self.wait_uptodate(page, true);
            }
            #[cfg(all(feature = "std", not(pagemap_loom)))]
            let t = std::time::Instant::now();
            let filled = match self.insert_new(index)? {
                Some(page) if fresh => Ok(self.fill_zeroes(page)),
                Some(page) => self.fill(page),
                None => continue, // someone inserted first: use theirs
            };
            #[cfg(all(feature = "std", not(pagemap_loom)))]
            self.pool.stats.load_miss.record(t.elapsed());
            return filled;
        }
    }

    /// A write of the whole page `index` (`data`) that misses the cache:
    /// inserts a frame holding `data`, published up to date and dirty, with
    /// no read from the store (its old bytes would be overwritten at once;
    /// Linux's `write_begin` skips the read of a folio the copy fills).
    /// Readers of the page wait for it as for a load (it is LOADING until
    /// the copy is in), so none sees the frame's earlier bytes.
    ///
    /// `Ok(false)`, nothing done, if the page is cached meanwhile (the
    /// caller, which missed it with `find`, writes it as usual) or, for a
    /// plain write (`extending: None`), not wholly inside the size: checked
    /// under the invalidate lock, taken shared, which keeps size changes
    /// off until the page is published.
    ///
    /// `extending: Some(reached)`: the caller is an extending `write_at`,
    /// holding the invalidate lock exclusively, with the end already raised
    /// past this page; the size is raised to `reached` (the byte after the
    /// page) after the copy and **before** the page is unlocked, as
    /// `copy_in` does, so a write-back of the page reads a size that covers
    /// it (mutant Z01's rule).
    pub(crate) fn overwrite_miss(
        &self,
        index: u64,
        data: &[u8; PAGE_SIZE],
        extending: Option<u64>,
    ) -> Result<bool, Error> {
        self.check_max(index)?;
        self.check_end(index)?;
        let _invalidate = extending.is_none().then(|| self.invalidate_lock.read());
        if extending.is_none() && self.valid_bytes(index) < PAGE_SIZE {
            return Ok(false); // a size change got there: the usual path decides
        }
        let Some(page) = self.insert_new(index)? else {
            return Ok(false); // someone inserted first: the usual path writes theirs
        };
        let frame = page.frame;
        self.pool.write_page(frame, data);
        if let Some(reached) = extending {
            if reached > self.size() {
                // Before the unlock (see above). SeqCst: as every store of
                // `size` (the faults' pair, through `end`).
                self.size.store(reached, Ordering::SeqCst);
            }
        }
        self.pool.set_flags(frame, flags::UPTODATE | flags::DIRTY);
        // Release: contents before the word that says "up to date" (as
        // `fill`).
        page.slot.set_loaded();
        self.pool.unlock(frame);
        self.sync_dirty_mark(index, frame);
        Ok(true)
    }

    /// The page at `index` if cached and up to date, else [`Error::WouldBlock`].
    /// Never sleeps (the fault handler calls it under an address-space lock).
    pub fn load_nowait(&self, index: u64) -> Result<PageRef<'_>, Error> {
        self.check_end(index)?;
        self.find(index)?.ok_or(Error::WouldBlock { index })
    }

    /// A new frame, LOCKED and LOADING, published at `index` with one
    /// count held by the caller, who fills it and marks it loaded; `None`
    /// if the slot is taken (the frame goes back to the pool), an error if
    /// the pool is empty or a truncate moved the end below `index`.
    fn insert_new(&self, index: u64) -> Result<Option<PageRef<'_>>, Error> {
        // Allocate and initialise the frame before taking the writer lock.
        let frame = self.pool.alloc()?;
        self.pool
            .set_owner(frame, self.id, index, flags::LOCKED | flags::PAGEMAP);
        match self.insert(index, frame) {
            Ok(Some(page)) => Ok(Some(page)),
            inserted => {
                self.pool.clear_flags(frame, !0);
                self.pool.free(frame);
                inserted
            }
        }
    }

    /// A page just published in `frame`, which we hold: a miss, and a page
    /// the eviction policy now tracks.
    pub(crate) fn inserted(&self, frame: FrameId) {
        self.stats.add(crate::frame::map_ctr::MISSES, 1);
        self.pool.policy_add(frame);
    }

    /// Publishes `frame` (LOCKED, owner set) at `index`, holding one count.
    /// `None` if the slot is taken; `BeyondEof` if a truncate got there first
    /// (checked under the writer lock, which truncate takes to move the end).
    fn insert(&self, index: u64, frame: FrameId) -> Result<Option<PageRef<'_>>, Error> {
        let g = self.tree.lock();
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
        self.inserted(frame);
        Ok(Some(self.page_ref(slot, word, index)))
    }

    /// Publishes a page whose frame lock we hold as up to date and zero,
    /// with no read (a page past the file's old end, about to be written).
    fn fill_zeroes<'a>(&'a self, page: PageRef<'a>) -> PageRef<'a> {
        let frame = page.frame;
        self.pool.write_page(frame, &ZERO_PAGE);
        self.pool
            .clear_flags(frame, flags::ERROR | flags::ERRNO_MASK);
        self.pool.set_flags(frame, flags::UPTODATE);
        // Release: contents before the word that says "up to date" (as
        // `fill`).
        page.slot.set_loaded();
        self.pool.unlock(frame);
        page
    }

    /// Reads a page whose frame lock we hold, straight into its frame (no
    /// bounce buffer: the frame is ours while it is LOCKED and LOADING; see
    /// `crate::frame`'s contents module), then unlocks it.
    fn fill<'a>(&'a self, page: PageRef<'a>) -> Result<PageRef<'a>, Error> {
        let frame = page.frame;
        // A new read: an earlier read's error is no longer this page's news.
        self.pool
            .clear_flags(frame, flags::ERROR | flags::ERRNO_MASK);
        self.stats.add(crate::frame::map_ctr::READS, 1);
        match self.store.read(&self.pool, frame, page.index) {
            Ok(()) => {
                self.pool
                    .clear_flags(frame, flags::ERROR | flags::ERRNO_MASK);
                self.pool.set_flags(frame, flags::UPTODATE);
                // Release: contents before the word that says "up to date".
                page.slot.set_loaded();
                self.pool.unlock(frame);
                Ok(page)
            }
            Err(source) => {
                self.pool.set_error(frame, source);
                self.pool.unlock(frame);
                let index = page.index;
                drop(page);
                self.discard_failed(index, frame);
                Err(Error::Read { index, source })
            }
        }
    }

    /// Waits for a page we hold to be up to date, or fills it ourselves if
    /// nobody is loading it (a previous read failed). `shared`: we hold the
    /// invalidate lock shared, which a read from the store needs (see
    /// [`load`](Self::load)); without it we take it before any read.
    fn wait_uptodate<'a>(&'a self, page: PageRef<'a>, shared: bool) -> Result<PageRef<'a>, Error> {
        // An ERROR already there when we arrive is an earlier read's: we
        // retry rather than report it (found by the loom model
        // stale_read_error). Only a read that fails while we wait is ours.
        let stale = self.pool.flags(page.frame) & flags::ERROR != 0;
        // A truncate may detach the page while we wait (it cut `index`
        // off): the load fails as one after the truncate would.
        let detached = |page: &PageRef<'_>| Error::BeyondEof {
            index: page.index,
            end: self.end(),
        };
        loop {
            let w = page.slot.load();
            if !slot::holds(w, page.frame) {
                return Err(detached(&page));
            }
            if !w.is_loading() {
                return Ok(page);
            }
            if self.pool.try_lock(page.frame) {
                // Truncate detaches under the page lock: stable from here.
                let w = page.slot.load();
                if !slot::holds(w, page.frame) {
                    self.pool.unlock(page.frame);
                    return Err(detached(&page));
                }
                if !w.is_loading() {
                    self.pool.unlock(page.frame);
                    return Ok(page);
                }
                let f = self.pool.flags(page.frame);
                if !stale && f & flags::ERROR != 0 {
                    // The read we waited for failed: report it, do not retry.
                    let source = self.pool.read_error(page.frame);
                    self.pool.unlock(page.frame);
                    let index = page.index;
                    return Err(Error::Read { index, source });
                }
                if !shared {
                    // The invalidate lock comes before the page lock (a
                    // hole punch zeroes pages under both): let go, take it,
                    // and look again.
                    self.pool.unlock(page.frame);
                    let _invalidate = self.invalidate_lock.read();
                    return self.wait_uptodate(page, true);
                }
                return self.fill(page);
            }
            self.pool.wait_unlocked(page.frame);
        }
    }

    /// Removes a page whose read failed, if nobody holds it and no remover
    /// runs (if one does, it will find the page).
    pub(super) fn discard_failed(&self, index: u64, frame: FrameId) {
        let Some(_r) = self.remover.try_lock() else {
            return;
        };
        let g = self.tree.lock();
        let guard = epoch::pin();
        let Some(slot) = self.tree.lookup(index, &guard) else {
            return;
        };
        let won = slot.update(|w| {
            if w.frame() == Some(frame) && w.is_loading() {
                slot::yank(slot::mark_removal(w)?)
            } else {
                Err(Refused::Busy)
            }
        });
        if won.is_ok() {
            self.tree.remove_yanked(index, self.may_unlink(), &g);
            self.nr_pages.fetch_sub(1, Ordering::Relaxed);
            drop(g);
            self.pool.free(frame);
        }
    }
}
