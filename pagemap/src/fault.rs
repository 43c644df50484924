//! The fault side: the calls a kernel's page-fault handler makes on a
//! [`PageMap`], the counterpart of Linux's `vm_operations_struct` (`fault`,
//! `map_pages`, `page_mkwrite`). `vmr`'s fault handler (`vmr/src/fault.rs`)
//! is the worked example; it uses these calls and nothing private.
//!
//! | call | Linux | when |
//! | --- | --- | --- |
//! | [`PageMap::map_page`] | `->fault` (`filemap_fault`'s cached path) | the faulting page's entry is empty (or the handler holds no frame to check) |
//! | [`PageMap::map_pages`] | `->map_pages` (`filemap_map_pages`) | fault-around: the empty entries of cached, up-to-date neighbours |
//! | [`PageMap::refault`] | (none: Linux unmaps instead of revoking) | the entry is not present but still names frame F (a removal revoked it) |
//! | [`PageMap::page_mkwrite`] | `->page_mkwrite` | a write to a present, read-only entry of a shared mapping |
//! | [`PageMap::load`] | `filemap_fault`'s blocking read | after [`Error::WouldBlock`], with the handler's lock dropped |
//!
//! None of them sleeps or takes a lock: a handler calls them under its
//! address-space lock. Each takes the page with a count that truncate waits
//! for, checks the end of the file after the count, and runs the handler's
//! callback, which installs or upgrades the entry, while the count is held.
//!
//! # The page table entry's states
//!
//! An entry of a file page is in one of three states (a kernel may add its
//! own, such as `vmr`'s private copy-on-write copies and its `LOCK` bit for a
//! copy in flight, which the page map never sees):
//!
//! * **empty**: no translation, no frame;
//! * **present**, naming the page's frame F, with its write and dirty bits;
//! * **revoked**: not present but still naming F, its dirty bit kept. A
//!   CPU access faults; the frame and the dirty bit stay recorded so that
//!   the removal that revoked it can take the bit (or a fault can put the
//!   entry back).
//!
//! Every change is one atomic read-modify-write of the entry that re-checks
//! what it read (a CPU sets accessed and dirty bits concurrently). The
//! transitions, who makes them, under what, and their order against the
//! TLB shootdown:
//!
//! | from -> to | who | under | shootdown |
//! | --- | --- | --- | --- |
//! | empty -> present | fault: [`map_page`](PageMap::map_page), [`map_pages`](PageMap::map_pages) callback | address-space lock (shared), the page's mapping count | none (adds a translation) |
//! | present -> present, writable and dirty | write fault: [`page_mkwrite`](PageMap::page_mkwrite) callback | address-space lock (shared), the mapping count | none |
//! | present -> present, read-only, clean | writeback: [`Mapper::clean`](crate::Mapper::clean) | nothing of the page map's; the page held ([`Harvest::hold`](crate::Harvest::hold)) before the entry's dirty bit is taken | before the page is marked dirty (the page map flushes the batch, then marks) |
//! | present -> revoked | removal pass 2: [`Mapper::revoke`](crate::Mapper::revoke) | the remover lock | pass 3, before the reap |
//! | revoked -> present | fault: [`refault`](PageMap::refault) callback (keeps the dirty bit) | address-space lock (shared), the mapping count, which clears `REMOVAL` so the removal's yank fails | none |
//! | revoked -> empty | removal pass 4: [`Mapper::reap`](crate::Mapper::reap) (hands the dirty bit to the victim) | the remover lock | after pass 3: no stale translation is left |
//! | revoked -> empty | fault, when [`refault`](PageMap::refault) says the page is gone; then it takes the miss path | address-space lock (shared) | none (was not present) |
//! | any -> empty | truncate, hole punch: [`Mapper::zap`](crate::Mapper::zap) (dirty bits dropped) | invalidate lock (exclusive) and the remover lock | before pages are zeroed or freed; a second zap after the faults in flight |
//! | any -> empty or less | munmap, mprotect (the kernel's own) | address-space lock (exclusive); dirty pages held ([`PageMap::find_frame`]) | before frames are freed and before dirty bits are marked |
//!
//! The rule behind the last column: an entry that loses rights (revoke,
//! clean, zap, munmap) is shot down before anyone acts on the loss (frees,
//! zeroes, marks dirty from a harvested bit); an entry that gains rights
//! needs no shootdown, since a stale translation only faults again.
//!
//! # Truncate
//!
//! A fault handler installs its page table entry in the callback of
//! [`PageMap::map_page`] (and its siblings), which counts the page in the
//! slot word's *mapping* field (besides the holder count), then checks the
//! end of the file, runs the callback, and drops both counts. Truncate
//! ([`PageMap::truncate`]) moves the end, zaps every mapping of the cut
//! range, waits for the mapping count of every page still cached there to
//! drain (then zeroes it), and zaps every mapping again. For a fault on a
//! page that truncate cuts off:
//!
//! * the fault's count and truncate's end store form a store-buffering
//!   pair (fault: RMW of the slot word, then load of the end; truncate:
//!   store of the end, then load of the slot word; all SeqCst): either the
//!   fault sees the new end and installs nothing (SIGBUS), or truncate sees
//!   the count and waits for it;
//! * a count truncate waited for was dropped (Release) after the fault's
//!   install, so the second zap finds and clears the entry.
//!
//! Hence the invariant: **when truncate returns, no entry maps a page at or
//! beyond the new end, and none can appear.** Fault-around takes the same
//! count and makes the same check for each neighbour, one at a time. The
//! effect is Linux's (faults check `i_size` with the folio locked, and
//! `truncate_pagecache` unmaps, truncates the locked folios and unmaps
//! again); the mechanism costs the fault no atomic operation beyond its get
//! and put, where the folio lock costs two more on another cache line
//! (measured: +25 ns, 15%, on the simulated minor fault). The loom models
//! `vmr_truncate_access` check it for a shared fault, a copy-on-write fault
//! and a fault-around neighbour, and fail without the second zap or without
//! the wait (`docs/design.md`, section 5.7); `pagemap::fault_iface` checks
//! [`map_pages`](PageMap::map_pages) and [`refault`](PageMap::refault)
//! against truncate and a removal with a page table of its own.
//!
//! The count lives only as long as the callback, so no caller can keep it:
//! truncate waits for callbacks, never for a holder's put.
//!
//! It replaces an install-then-recheck scheme, which let truncate return
//! while a fault sat between its install and its recheck, so another CPU
//! could read the cut page after truncate had returned.
//!
//! # Removal
//!
//! A removal marks unreferenced pages `REMOVAL`, revokes their entries,
//! shoots down, reaps the entries still revoked, and yanks the pages still
//! marked (`crate::remove`). A fault's count clears `REMOVAL` (as any get
//! does), so once a callback runs, that page's yank fails and the page
//! stays; the reap's CAS then loses to the callback's (the entry is present
//! again) or wins, handing the dirty bit to the page, and the callback's
//! CAS fails and it re-reads an empty entry. [`refault`](PageMap::refault)
//! takes the count only if the page is still in the frame the entry names:
//! if the yank won, the page is gone (or another frame holds it) and the
//! reap has already cleared the entry.

use core::ops::Deref;

use crate::error::Error;
use crate::frame::FrameId;
use crate::map::{PageMap, PageRef};
use crate::slot::Refused;
use crate::sync::epoch;

/// A page held by a fault inside [`PageMap::map_page`]'s callback, the page
/// known to be inside the file (see the module docs). Dereferences to the
/// [`PageRef`]; dropping it is the put of both counts.
pub(crate) struct MapRef<'a> {
    page: core::mem::ManuallyDrop<PageRef<'a>>,
}

impl<'a> Deref for MapRef<'a> {
    type Target = PageRef<'a>;

    fn deref(&self) -> &PageRef<'a> {
        &self.page
    }
}

impl Drop for MapRef<'_> {
    #[inline]
    fn drop(&mut self) {
        // One fetch_sub for the holder and the mapping (Release: see
        // `Slot::put_mapping`); the PageRef's own put must not run too.
        self.page.slot.put_mapping();
    }
}

impl core::fmt::Debug for MapRef<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("MapRef").field(&*self.page).finish()
    }
}

impl PageMap {
    /// Runs `install` on the cached, up-to-date page at `index` while the
    /// page map orders it against truncate: a fault handler installs its page
    /// table entry (or publishes a copy-on-write copy) in `install`. Either
    /// the page is inside the file for the whole call, and a truncate that
    /// cuts it waits for the call to return and then zaps what it installed,
    /// or this returns [`Error::BeyondEof`] without calling `install`. See
    /// the module docs ([`crate::fault`]) for the
    /// protocol and `vmr`'s fault handler for the worked example.
    ///
    /// Never sleeps and takes no lock (a fault handler calls it under its
    /// address-space lock); while 15 other calls are inside their callbacks
    /// for the same page it spins until one returns. `install` runs with the
    /// page held: it may take its own locks, allocate and shoot down TLBs,
    /// but must not wait for I/O or for anything a truncate holds (the
    /// map's locks, page locks), and must not call `map_page` or
    /// `truncate` of this map. The hold comes from the reserve above
    /// [`MAX_REFS`](crate::MAX_REFS): users holding the page at their limit
    /// do not stop a fault.
    ///
    /// # Errors
    /// * [`Error::BeyondEof`]: `index` is at or beyond the end of the file
    ///   (deliver SIGBUS);
    /// * [`Error::WouldBlock`]: not cached or not up to date: drop the
    ///   address-space lock, [`load`](Self::load) it, and retry the fault.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pagemap::{Error, FramePool, MemStore, PageMap};
    ///
    /// let map = PageMap::new(Arc::new(FramePool::new(8).unwrap()), Arc::new(MemStore::new()));
    /// drop(map.load(3).unwrap());
    /// // A fault: install the entry of page 3 (frame `page.frame()`) here.
    /// let frame = map.map_page(3, |page| page.frame()).unwrap();
    /// map.truncate(3);
    /// assert!(matches!(map.map_page(3, |p| p.frame()), Err(Error::BeyondEof { .. })));
    /// assert!(matches!(map.map_page(2, |p| p.frame()), Err(Error::WouldBlock { .. })));
    /// # let _ = frame;
    /// ```
    #[inline]
    pub fn map_page<R>(
        &self,
        index: u64,
        install: impl FnOnce(&PageRef<'_>) -> R,
    ) -> Result<R, Error> {
        let page = self.get_for_map(index)?;
        Ok(install(&page))
    }

    /// Fault-around (Linux's `map_pages`): for each page of `[first, last]`
    /// that `want`s it (say, its entry is empty) and is cached and up to
    /// date, runs `install` as [`map_page`](Self::map_page) would, ordered
    /// against truncate page by page. Pages not cached, still loading, or
    /// in use by 15 other faults' callbacks are skipped; the walk stops at
    /// the end of the file. Returns how many `install` calls returned
    /// `true` (entries installed).
    ///
    /// Never sleeps and takes no lock; `want` runs with nothing held and
    /// `install` under the same rules as [`map_page`](Self::map_page)'s
    /// callback. The faulting page itself goes through `map_page` (or
    /// [`refault`](Self::refault)), not here: `want` should refuse it.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::sync::Arc;
    /// use pagemap::{FramePool, MemStore, PageMap};
    ///
    /// let map = PageMap::new(Arc::new(FramePool::new(8).unwrap()), Arc::new(MemStore::new()));
    /// for i in [1, 2, 4] {
    ///     drop(map.load(i).unwrap());
    /// }
    /// map.truncate(4); // page 4 is cut off
    /// let ptes: [Cell<u32>; 6] = Default::default(); // a toy page table: frame ids, 0 empty
    /// let n = map.map_pages(0, 5, |i| i != 2 && ptes[i as usize].get() == 0, |page| {
    ///     ptes[page.index() as usize].set(page.frame().get());
    ///     true
    /// });
    /// assert_eq!(n, 1, "page 1 only: 2 refused, 0 and 3 not cached, 4 cut off");
    /// assert_ne!(ptes[1].get(), 0);
    /// ```
    pub fn map_pages(
        &self,
        first: u64,
        last: u64,
        mut want: impl FnMut(u64) -> bool,
        mut install: impl FnMut(&PageRef<'_>) -> bool,
    ) -> u64 {
        let mut installed = 0;
        let mut index = first;
        while index <= last {
            if want(index) {
                match self.get_for_map_of(index, None) {
                    Ok(page) => installed += u64::from(install(&page)),
                    // Every later page is beyond the end too.
                    Err(Error::BeyondEof { .. }) => break,
                    Err(_) => {}
                }
            }
            match index.checked_add(1) {
                Some(next) => index = next,
                None => break,
            }
        }
        installed
    }

    /// Refault of an entry that still names `frame` but is not present (a
    /// removal revoked it, `Mapper::revoke`): runs `install` with the page
    /// held only if `index` is still cached, up to date, in `frame`, ordered
    /// against truncate as [`map_page`](Self::map_page) is. The hold clears
    /// the page's `REMOVAL`, so a removal in progress keeps it (its yank
    /// fails); `install` makes the entry present again with one atomic
    /// update that keeps its dirty bit (the removal's reap may have cleared
    /// the entry first, handing the bit to the page: then the update fails
    /// and the handler installs afresh from the page it holds).
    ///
    /// `Ok(None)`: the page is gone from `frame` (removed, maybe reloaded
    /// elsewhere). The removal reaped the entry before it yanked the page,
    /// so the entry the handler read is stale: it clears it with one
    /// compare-and-swap on the value it read (which fails if the reap got
    /// there, as it must have) and takes the miss path
    /// ([`map_page`](Self::map_page), then [`load`](Self::load) if that
    /// says [`Error::WouldBlock`]).
    ///
    /// Same locking and callback rules as [`map_page`](Self::map_page).
    ///
    /// # Errors
    /// [`Error::BeyondEof`]: `index` is at or beyond the end of the file
    /// (SIGBUS; truncate clears the entry).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pagemap::{FramePool, MemStore, PageMap};
    ///
    /// let map = PageMap::new(Arc::new(FramePool::new(8).unwrap()), Arc::new(MemStore::new()));
    /// let frame = map.load(3).unwrap().frame(); // an entry names it
    /// assert_eq!(map.refault(3, frame, |page| page.frame()).unwrap(), Some(frame));
    /// map.free_unused(); // a removal takes the page
    /// assert_eq!(map.refault(3, frame, |page| page.frame()).unwrap(), None);
    /// ```
    #[inline]
    pub fn refault<R>(
        &self,
        index: u64,
        frame: FrameId,
        install: impl FnOnce(&PageRef<'_>) -> R,
    ) -> Result<Option<R>, Error> {
        match self.get_for_map_of(index, Some(frame)) {
            Ok(page) => Ok(Some(install(&page))),
            Err(Error::WouldBlock { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A write to a present, read-only entry of a shared mapping that names
    /// `frame` (Linux's `page_mkwrite`; the entry was write-protected by
    /// writeback's `Mapper::clean`, or installed read-only by a read
    /// fault). What the handler must do, in `install`, with the page held
    /// as by [`refault`](Self::refault): make the entry writable **and
    /// dirty** in one atomic update of the value it read, keeping the frame.
    /// The entry's dirty bit is then the page's dirtiness: writeback's
    /// clean, a removal's reap or munmap hands it to the page; the page's
    /// own flag is not set here (that would take the page lock under the
    /// handler's lock, and the entry already records it).
    ///
    /// The page map needs nothing more: write-back cleans a page under its
    /// page lock and a write after the clean dirties the page again,
    /// so no write waits for a write-back (no stable pages). A store that
    /// needed stable pages would answer [`Error::WouldBlock`] here while
    /// the page is under write-back. `Ok(None)`, `Err`: as
    /// [`refault`](Self::refault).
    ///
    /// # Errors
    /// [`Error::BeyondEof`]: as [`refault`](Self::refault).
    #[inline]
    pub fn page_mkwrite<R>(
        &self,
        index: u64,
        frame: FrameId,
        install: impl FnOnce(&PageRef<'_>) -> R,
    ) -> Result<Option<R>, Error> {
        self.refault(index, frame, install)
    }

    /// The hold of [`map_page`](Self::map_page): the page counted as
    /// mapping, then the end checked.
    #[inline]
    pub(crate) fn get_for_map(&self, index: u64) -> Result<MapRef<'_>, Error> {
        self.get_for_map_of(index, None)
    }

    /// [`get_for_map`](Self::get_for_map) of the page only if it is in
    /// `frame` (given); [`Error::WouldBlock`] if it is not cached, not up
    /// to date, or in another frame.
    #[inline]
    fn get_for_map_of(&self, index: u64, frame: Option<FrameId>) -> Result<MapRef<'_>, Error> {
        self.check_end(index)?;
        let guard = epoch::pin();
        let Some(slot) = self.tree.lookup(index, &guard) else {
            return Err(Error::WouldBlock { index });
        };
        let word = match slot.get_for_map_of(frame.map(FrameId::get)) {
            Ok(word) => word,
            Err(Refused::Overflow) => {
                panic!("the reserve of short holds of page {index} is exhausted")
            }
            Err(_) => return Err(Error::WouldBlock { index }),
        };
        let page = MapRef {
            page: core::mem::ManuallyDrop::new(self.page_ref(slot, word, index)),
        };
        // After our count, before the install: the second half of the pair
        // with truncate's end store (see the module docs). Dropping `page`
        // on error undoes the count. Then the same pair with a size
        // extension's store of its first page (see `map/size.rs`).
        self.check_end(index)?;
        self.check_extending(index)?;
        Ok(page)
    }
}
