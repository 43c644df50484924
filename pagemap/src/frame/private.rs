//! [`PrivateFrame`]: the owning handle of a frame outside any page map.

use core::fmt;

use super::{flags, FrameId, FramePool};
use crate::PAGE_SIZE;

/// An owned frame outside any page map: a private copy-on-write copy, an
/// anonymous page. Dropping it frees the frame (asserting it is not free
/// already). [`into_raw`](Self::into_raw) hands the ownership to a page table
/// entry; [`from_raw`](Self::from_raw) takes it back when the entry is
/// cleared (then free it only after the shootdown:
/// [`ShootdownBatch::defer_free`](crate::ShootdownBatch::defer_free)).
///
/// ```
/// use std::sync::Arc;
/// use pagemap::FramePool;
///
/// let pool = Arc::new(FramePool::new(1).unwrap());
/// let mut page = [0u8; 4096];
/// page[7] = 42;
/// let frame = pool.alloc_private().unwrap();
/// frame.write_page(&page);
/// let raw = frame.into_raw(); // now owned by, say, a page table entry
/// assert_eq!(pool.free_frames(), 0);
/// // SAFETY: `raw` came from `into_raw` on this pool, and the entry that
/// // owned it is gone: nothing else will take it back.
/// let frame = unsafe { pagemap::PrivateFrame::from_raw(&pool, raw) };
/// let mut back = [0u8; 4096];
/// frame.read_page(&mut back);
/// assert_eq!(back[7], 42);
/// drop(frame);
/// assert_eq!(pool.free_frames(), 1);
/// ```
pub struct PrivateFrame {
    // pub(super): `FramePool::alloc_private` builds the handle.
    pub(super) pool: alloc::sync::Arc<FramePool>,
    pub(super) id: FrameId,
}

impl PrivateFrame {
    /// The frame's id (what a page table entry names).
    pub fn id(&self) -> FrameId {
        self.id
    }

    /// The pool it belongs to.
    pub fn pool(&self) -> &alloc::sync::Arc<FramePool> {
        &self.pool
    }

    /// Copies the whole page out.
    pub fn read_page(&self, buf: &mut [u8; PAGE_SIZE]) {
        self.pool.copy_page(self.id, buf);
    }

    /// Overwrites the whole page (it is ours alone).
    pub fn write_page(&self, buf: &[u8; PAGE_SIZE]) {
        self.pool.write_page(self.id, buf);
    }

    /// Gives up the handle without freeing: the caller now owns the frame
    /// through the returned id (e.g. in a page table entry), and must take it
    /// back with [`from_raw`](Self::from_raw) to free it.
    #[must_use = "the frame leaks unless taken back with from_raw"]
    pub fn into_raw(self) -> FrameId {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped nor used again, so moving the Arc
        // out of it is the field's only drop: the pool's count goes back
        // down here (forgetting the whole handle leaked one count a call,
        // so a pool whose frames went through page tables was never freed).
        drop(unsafe { core::ptr::read(&this.pool) });
        this.id
    }

    /// Takes back the ownership that [`into_raw`](Self::into_raw) gave up.
    ///
    /// # Safety
    /// `id` must come from `into_raw` of a `PrivateFrame` of this `pool`, and
    /// this must be the only `from_raw` of it since (the owner that held the
    /// id, such as a page table entry, has given it up: e.g. a swap or CAS
    /// took the entry out of the table). Otherwise two handles free one
    /// frame (the second free panics) or a frame still in use is freed.
    ///
    /// # Panics
    /// If the frame is free, or is a page map's (its PAGEMAP flag is set):
    /// either way `id` did not come from `into_raw`, and freeing it on drop
    /// would make two pages share one frame. (A frame that went back to the
    /// pool and was taken again by another `PrivateFrame` cannot be told
    /// apart: that misuse stays the caller's.)
    pub unsafe fn from_raw(pool: &alloc::sync::Arc<FramePool>, id: FrameId) -> Self {
        let f = pool.flags(id);
        assert!(
            f & (flags::FREE | flags::PAGEMAP) == 0,
            "PrivateFrame::from_raw of frame {id:?}, which is not a private frame ({f:#x})"
        );
        Self {
            pool: pool.clone(),
            id,
        }
    }
}

impl Drop for PrivateFrame {
    fn drop(&mut self) {
        self.pool.free(self.id);
    }
}

impl fmt::Debug for PrivateFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PrivateFrame").field(&self.id).finish()
    }
}
