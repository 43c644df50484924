//! [`PageRef`]: a counted reference to a cached page (a holder of its slot).

use core::fmt;

use crate::error::Error;
use crate::frame::{flags, FrameId};
use crate::slot::{self, Refused, Slot};
use crate::store::PageBuf;

use super::inspect::flag_names;
use super::PageMap;

/// A counted reference to a cached page (a slot holder). Dropping it is the put.
///
/// While it lives the page cannot be removed, and its contents can be read and
/// written without any lock on the map. The one exception is a
/// [`truncate`](PageMap::truncate) that cuts the page off: it takes the page
/// out of the cache anyway (zeroed, as the file now reads there) and leaves
/// this reference *detached* ([`is_detached`](Self::is_detached)): it still
/// reads, its writes fail with [`Error::Detached`], and its frame goes back
/// to the pool at the last put. A load of the same index after the file
/// grows again gets a fresh page, so nothing written through an old
/// reference can resurface (Linux's truncate likewise takes the folio out of
/// the mapping while it is referenced).
pub struct PageRef<'a> {
    pub(super) map: &'a PageMap,
    pub(crate) slot: &'a Slot,
    pub(super) frame: FrameId,
    pub(super) index: u64,
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

    /// Frame flags now (see [`crate::flags`]).
    pub fn flags(&self) -> u32 {
        self.map.pool.flags(self.frame)
    }

    /// Whether the contents are valid (a detached page's are: zeroes,
    /// unless it was detached before any read succeeded).
    pub fn is_uptodate(&self) -> bool {
        let w = self.slot.load();
        if slot::holds(w, self.frame) {
            !w.is_loading()
        } else {
            self.flags() & flags::UPTODATE != 0
        }
    }

    /// Whether a truncate cut this page out of the cache while it was held
    /// (see the type's docs): writes through it fail with
    /// [`Error::Detached`].
    pub fn is_detached(&self) -> bool {
        self.flags() & flags::DETACHED != 0
    }

    /// Whether the page differs from the backing store.
    pub fn is_dirty(&self) -> bool {
        self.flags() & flags::DIRTY != 0
    }

    /// Holders of this page now (this one included; for a detached page,
    /// its remaining holders).
    pub fn holders(&self) -> u64 {
        let w = self.slot.load();
        if slot::holds(w, self.frame) {
            w.refs()
        } else {
            self.map.pool.orphans(self.frame)
        }
    }

    /// Copies bytes out of the page. Lock-free; a concurrent writer's bytes
    /// may be seen partly, as with shared memory.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.map.pool.read_bytes(self.frame, offset, buf)
    }

    /// Copies the whole page out.
    pub fn read_page(&self, buf: &mut PageBuf) {
        self.map.pool.copy_page(self.frame, buf)
    }

    /// Copies `data` into the page at `offset` under the page lock and
    /// marks it dirty after the copy. A write-back cleans the page under the
    /// same lock and then lets the store read the frame itself, so a write
    /// that overlaps the I/O may reach the store partly, but always leaves
    /// the page dirty, to be written again whole: nothing is lost.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] if the range leaves the page;
    /// [`Error::Detached`] if a truncate cut the page off (nothing is
    /// written; checked under the page lock, under which truncate detaches,
    /// so a write either lands before the cut, and is discarded with the
    /// page, or is refused);
    /// [`Error::BeyondSize`] if it reaches bytes at or past the file's size
    /// ([`PageMap::size`]; a write-back would drop them, so nothing is
    /// written: extend the file with
    /// [`PageMap::set_size`] or write through [`PageMap::write_at`]).
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), Error> {
        let pool = &self.map.pool;
        if data.is_empty() {
            // Checked, but nothing changes: the page stays clean.
            return pool.write(self.frame, offset, data);
        }
        if offset
            .checked_add(data.len())
            .is_none_or(|e| e > crate::PAGE_SIZE)
        {
            return Err(Error::OutOfBounds {
                offset,
                len: data.len(),
            });
        }
        pool.lock(self.frame);
        if pool.flags(self.frame) & flags::DETACHED != 0 {
            pool.unlock(self.frame);
            return Err(Error::Detached { index: self.index });
        }
        // Under the page lock: a size change that cuts into or extends over
        // this page takes it too, and a write-back reads the size under it,
        // so the bytes we copy are the ones the next write-back writes.
        if let Err(e) = self.map.check_size(self.index, offset, data.len()) {
            pool.unlock(self.frame);
            return Err(e);
        }
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
    /// without the writes this mark stands for). A detached page stays
    /// clean: it belongs to no file offset.
    pub fn mark_dirty(&self) {
        self.map.mark_frame_dirty(self.index, self.frame);
    }

    /// Marks the page clean, discarding the difference from the store.
    pub fn clear_dirty(&self) {
        if self.map.pool.clear_flags(self.frame, flags::DIRTY) & flags::DIRTY != 0 {
            self.map.sync_dirty_mark(self.index, self.frame);
        }
    }

    /// Another reference to the same page (detached too if this one is).
    pub fn try_clone(&self) -> Result<PageRef<'a>, Error> {
        let overflow = Error::RefcountOverflow { index: self.index };
        match self.slot.get_of(self.frame) {
            Ok(w) => Ok(self.map.page_ref(self.slot, w, self.index)),
            Err(Some(Refused::Overflow)) => Err(overflow),
            Err(Some(r)) => unreachable!("a held slot is present: {r:?}"),
            // Detached: count on the frame (we hold it, so it stays).
            Err(None) if self.map.pool.orphan_get(self.frame, slot::MAX_REFS) => Ok(PageRef {
                map: self.map,
                slot: self.slot,
                frame: self.frame,
                index: self.index,
            }),
            Err(None) => Err(overflow),
        }
    }
}

impl Drop for PageRef<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.slot.put_of(self.frame).is_err() {
            self.map.put_detached(self.frame);
        }
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

/// A counted reference to a cached page that keeps its page map alive (an
/// `Arc<PageMap>` inside), so it borrows nothing: a kernel can keep it in
/// its own structures (a page attached to a socket buffer, a pinned DMA
/// page) for as long as it likes, and send it to other threads. Dropping it
/// is the put, then the map's `Arc` is released.
///
/// ```
/// use std::sync::Arc;
/// use pagemap::{FramePool, MemStore, OwnedPageRef, PageMap};
///
/// let map = PageMap::new(Arc::new(FramePool::new(4).unwrap()), Arc::new(MemStore::new()));
/// let kept: OwnedPageRef = map.load(3).unwrap().into_owned(&map);
/// let t = std::thread::spawn(move || kept.get().write(0, b"from afar").unwrap());
/// t.join().unwrap();
/// assert!(map.find(3).unwrap().unwrap().is_dirty());
/// ```
pub struct OwnedPageRef {
    /// Borrows from `map`'s allocation, which the `Arc` below keeps where
    /// it is; never handed out with the `'static` lifetime.
    page: core::mem::ManuallyDrop<PageRef<'static>>,
    map: alloc::sync::Arc<PageMap>,
}

impl<'a> PageRef<'a> {
    /// Turns this reference into one that keeps `map` alive instead of
    /// borrowing it (no count is taken or dropped).
    ///
    /// # Panics
    /// If `map` is not the page map this reference belongs to.
    pub fn into_owned(self, map: &alloc::sync::Arc<PageMap>) -> OwnedPageRef {
        assert!(
            core::ptr::eq(self.map, &**map),
            "into_owned with another page map's Arc"
        );
        let page = core::mem::ManuallyDrop::new(self);
        // SAFETY: the reference's borrows (the map, and the slot in the
        // map's tree, which a held slot keeps: only empty nodes are
        // unlinked) point into `map`'s allocation, which the clone below
        // keeps alive and in place for as long as the OwnedPageRef lives;
        // the extended lifetime is only ever shortened back to a borrow of
        // the OwnedPageRef (`get`). Reading the PageRef out of the
        // ManuallyDrop moves it without running its Drop (no put).
        let page: PageRef<'static> = unsafe {
            core::mem::transmute::<PageRef<'a>, PageRef<'static>>(core::ptr::read(&*page))
        };
        OwnedPageRef {
            page: core::mem::ManuallyDrop::new(page),
            map: map.clone(),
        }
    }
}

impl OwnedPageRef {
    /// The page, as a reference borrowed from this one (all of
    /// [`PageRef`]'s methods).
    pub fn get(&self) -> &PageRef<'_> {
        &self.page
    }

    /// The page map.
    pub fn map(&self) -> &alloc::sync::Arc<PageMap> {
        &self.map
    }

    /// Page index in the file.
    pub fn index(&self) -> u64 {
        self.page.index
    }

    /// The frame holding the page.
    pub fn frame(&self) -> FrameId {
        self.page.frame
    }
}

impl Drop for OwnedPageRef {
    fn drop(&mut self) {
        // SAFETY: dropped once, here, before `map` (declared after it) is
        // released: the put reaches a live slot.
        unsafe { core::mem::ManuallyDrop::drop(&mut self.page) };
    }
}

impl fmt::Debug for OwnedPageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OwnedPageRef").field(&*self.page).finish()
    }
}
