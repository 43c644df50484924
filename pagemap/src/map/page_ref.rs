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
/// written without any lock on the map.
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

    /// Whether the contents are valid.
    pub fn is_uptodate(&self) -> bool {
        !self.slot.load().is_loading()
    }

    /// Whether the page differs from the backing store.
    pub fn is_dirty(&self) -> bool {
        self.flags() & flags::DIRTY != 0
    }

    /// Holders of this page now (this one included).
    pub fn holders(&self) -> u64 {
        self.slot.load().refs()
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
