//! The fault side of truncate: a page locked for installing translations.
//!
//! A fault handler that has taken a page (with [`PageMap::load_nowait`] or
//! [`PageMap::find`]) installs its page table entry while holding a
//! [`MapGuard`]: the page lock, taken *before* the end of the file is
//! checked and dropped only after the entry is in place. Truncate
//! ([`PageMap::truncate`]) moves the end, zaps every mapping of the cut
//! range, then takes the page lock of every page still cached there (to
//! zero it) and zaps every mapping again. So, for a fault on a page that
//! truncate cuts off, either
//!
//! * the fault's guard came first: its entry was installed before truncate
//!   could lock the page, and the second zap clears it; or
//! * truncate's lock came first: the fault's end check, under the lock,
//!   sees the new end and the fault gets [`Error::BeyondEof`] (SIGBUS).
//!
//! Hence the invariant: **when truncate returns, no entry maps a page at or
//! beyond the new end, and none can appear.** This is Linux's protocol
//! (`filemap_fault` and `filemap_map_pages` check `i_size` with the folio
//! locked; `truncate_pagecache` unmaps, truncates the locked folios, and
//! unmaps again). The loom models `vmr_truncate_fault` and
//! `vmr_truncate_access` check it, for a shared fault, a copy-on-write fault
//! and a fault-around neighbour (`docs/design.md`, section 5.7).
//!
//! It replaces an install-then-recheck scheme (a SeqCst store-buffering pair
//! with the zap, the entry taken back when the end had moved): that let
//! truncate return while a fault sat between its install and its recheck, so
//! another CPU could read the cut page after truncate had returned.

use crate::error::Error;
use crate::frame::FrameId;
use crate::map::{PageMap, PageRef};

/// The page lock of a page whose translations a fault is installing, with
/// the page known to be inside the file (see the module docs). Dropping it
/// unlocks the page.
///
/// Lock order: taken under the address-space lock (read) of the faulting
/// space; under it the fault may take its copy-on-write mutex, allocate
/// frames and shoot down TLBs, but must not wait for I/O or for another
/// page's lock (fault-around uses [`PageRef::try_lock_for_map`]).
///
/// ```
/// use std::sync::Arc;
/// use pagemap::{Error, FramePool, MemStore, PageMap};
///
/// let map = PageMap::new(Arc::new(FramePool::new(8).unwrap()), Arc::new(MemStore::new()));
/// drop(map.load(3).unwrap());
/// let page = map.load_nowait(3).unwrap();
/// {
///     let _guard = page.lock_for_map().unwrap();
///     // ... install the page table entry of page 3 here ...
/// }
/// drop(page);
/// map.truncate(3);
/// assert!(matches!(map.load_nowait(3), Err(Error::BeyondEof { .. })));
/// ```
#[must_use = "the page is unlocked when the guard is dropped"]
pub struct MapGuard<'p> {
    map: &'p PageMap,
    frame: FrameId,
}

impl Drop for MapGuard<'_> {
    fn drop(&mut self) {
        // Release (in unlock): the entry installed under the guard is
        // visible to the truncate that takes the lock next, and so to its
        // second zap.
        self.map.pool.unlock(self.frame);
    }
}

impl std::fmt::Debug for MapGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapGuard")
            .field("frame", &self.frame)
            .finish()
    }
}

impl PageRef<'_> {
    /// Locks the page for installing page table entries of it, then checks
    /// that it is still inside the file. Waits while the page lock is held
    /// (by a `write`, a writeback's snapshot, truncate's zeroing or another
    /// fault: short, never across I/O).
    ///
    /// # Errors
    /// [`Error::BeyondEof`] if a truncate has cut the file at or below this
    /// page: install nothing, deliver SIGBUS. The page is left unlocked.
    pub fn lock_for_map(&self) -> Result<MapGuard<'_>, Error> {
        let map = self.map();
        map.pool.lock(self.frame());
        self.guard_inside()
    }

    /// [`lock_for_map`](Self::lock_for_map) without waiting: `None` if the
    /// page lock is taken (fault-around skips such a neighbour).
    ///
    /// # Errors
    /// As [`lock_for_map`](Self::lock_for_map).
    pub fn try_lock_for_map(&self) -> Option<Result<MapGuard<'_>, Error>> {
        let map = self.map();
        map.pool.try_lock(self.frame()).then(|| self.guard_inside())
    }

    /// With the page lock held: the guard, or unlock and `BeyondEof`.
    fn guard_inside(&self) -> Result<MapGuard<'_>, Error> {
        let map = self.map();
        let guard = MapGuard {
            map,
            frame: self.frame(),
        };
        // Under the lock: a truncate that moved the end before our lock's
        // Acquire (its unlock of this page's lock, after the end store, is
        // what we synchronise with) is seen here.
        map.check_end(self.index())?;
        Ok(guard)
    }
}
