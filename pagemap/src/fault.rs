//! The fault side of truncate: a page held for installing translations.
//!
//! A fault handler installs its page table entry in the callback of
//! [`PageMap::map_page`], which counts the page in the slot word's *mapping*
//! field (besides the holder count), then checks the end of the file, runs
//! the callback, and drops both counts. Truncate ([`PageMap::truncate`])
//! moves the end, zaps every mapping of the cut range, waits for the mapping
//! count of every page still cached there to drain (then zeroes it), and
//! zaps every mapping again. For a fault on a page that truncate cuts off:
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
//! beyond the new end, and none can appear.** The effect is Linux's (faults
//! check `i_size` with the folio locked, and `truncate_pagecache` unmaps,
//! truncates the locked folios and unmaps again); the mechanism costs the
//! fault no atomic operation beyond its get and put, where the folio lock
//! costs two more on another cache line (measured: +25 ns, 15%, on the
//! simulated minor fault). The loom models `vmr_truncate_access` check it
//! for a shared fault, a copy-on-write fault and a fault-around neighbour,
//! and fail without the second zap or without the wait (`docs/design.md`,
//! section 5.7).
//!
//! The count lives only as long as the callback, so no caller can keep it:
//! truncate waits for callbacks, never for a holder's put.
//!
//! It replaces an install-then-recheck scheme, which let truncate return
//! while a fault sat between its install and its recheck, so another CPU
//! could read the cut page after truncate had returned.

use core::ops::Deref;

use crate::error::Error;
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
    /// the module docs ([`fault`](crate::PageMap::map_page)) for the
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

    /// The hold of [`map_page`](Self::map_page): the page counted as
    /// mapping, then the end checked.
    #[inline]
    pub(crate) fn get_for_map(&self, index: u64) -> Result<MapRef<'_>, Error> {
        self.check_end(index)?;
        let guard = epoch::pin();
        let Some(slot) = self.tree.lookup(index, &guard) else {
            return Err(Error::WouldBlock { index });
        };
        let word = match slot.get_for_map() {
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
        // on error undoes the count.
        self.check_end(index)?;
        Ok(page)
    }
}
