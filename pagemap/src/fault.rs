//! The fault side of truncate: a page held for installing translations.
//!
//! A fault handler takes the page it maps with [`PageMap::get_for_map`],
//! which counts it in the slot word's *mapping* field (besides the holder
//! count) and then checks the end of the file, and installs its page table
//! entry before dropping the [`MapRef`]. Truncate ([`PageMap::truncate`])
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
//! It replaces an install-then-recheck scheme, which let truncate return
//! while a fault sat between its install and its recheck, so another CPU
//! could read the cut page after truncate had returned.

use std::ops::Deref;

use crate::error::Error;
use crate::map::{PageMap, PageRef};
use crate::slot::Refused;
use crate::sync::epoch;

/// A page held by a fault that is installing page table entries of it, the
/// page known to be inside the file (see the module docs). Dereferences to
/// the [`PageRef`]; dropping it is the put.
///
/// Hold it only from [`PageMap::get_for_map`] until the entry is installed
/// (or a copy-on-write copy published): a truncate of this page waits for it.
/// Never wait for I/O while holding one.
///
/// ```
/// use std::sync::Arc;
/// use pagemap::{Error, FramePool, MemStore, PageMap};
///
/// let map = PageMap::new(Arc::new(FramePool::new(8).unwrap()), Arc::new(MemStore::new()));
/// drop(map.load(3).unwrap());
/// {
///     let page = map.get_for_map(3).unwrap();
///     // ... install the page table entry of page 3, frame page.frame() ...
/// }
/// map.truncate(3);
/// assert!(matches!(map.get_for_map(3), Err(Error::BeyondEof { .. })));
/// assert!(matches!(map.get_for_map(2), Err(Error::WouldBlock { .. })));
/// ```
#[must_use = "the fault must install its entry while it holds the page"]
pub struct MapRef<'a> {
    page: std::mem::ManuallyDrop<PageRef<'a>>,
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

impl std::fmt::Debug for MapRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MapRef").field(&*self.page).finish()
    }
}

impl PageMap {
    /// The cached, up-to-date page at `index`, held for a fault that will
    /// install a page table entry of it (see [`MapRef`]). Never sleeps
    /// (a fault handler calls it under its address-space lock); lock-free.
    ///
    /// # Errors
    /// * [`Error::BeyondEof`]: `index` is at or beyond the end of the file
    ///   (deliver SIGBUS);
    /// * [`Error::WouldBlock`]: not cached or not up to date: drop the
    ///   address-space lock, [`load`](Self::load) it, and retry the fault;
    /// * [`Error::RefcountOverflow`]: users hold the page at
    ///   [`MAX_REFS`](crate::slot::MAX_REFS).
    #[inline]
    pub fn get_for_map(&self, index: u64) -> Result<MapRef<'_>, Error> {
        self.check_end(index)?;
        let guard = epoch::pin();
        let Some(slot) = self.tree.lookup(index, &guard) else {
            return Err(Error::WouldBlock { index });
        };
        let word = match slot.get_for_map() {
            Ok(word) => word,
            Err(Refused::Overflow) => return Err(Error::RefcountOverflow { index }),
            Err(_) => return Err(Error::WouldBlock { index }),
        };
        let page = MapRef {
            page: std::mem::ManuallyDrop::new(self.page_ref(slot, word, index)),
        };
        // After our count, before we install: the second half of the pair
        // with truncate's end store (see the module docs). Dropping `page`
        // on error undoes the count.
        crate::sync::seqcst_pair();
        self.check_end(index)?;
        Ok(page)
    }
}
