//! [`PrivateFrame`]: the owning handle of a frame outside any page map.

use core::fmt;

use super::{flags, FrameId, FramePool};
use crate::PAGE_SIZE;

/// One map reference to a frame outside any page map: a private
/// copy-on-write copy, an anonymous page. A private frame counts its map
/// references (Linux's `mapcount` of an anonymous folio): one at
/// [`alloc_private`](FramePool::alloc_private), one more for each page table
/// entry that shares it after a fork ([`share_raw`](Self::share_raw)).
/// Dropping a handle drops its reference, and the last one frees the frame
/// (asserting it is not free already). [`into_raw`](Self::into_raw) hands the
/// reference to a page table entry; [`from_raw`](Self::from_raw) takes it
/// back when the entry is cleared (then drop it only after the shootdown:
/// [`ShootdownBatch::defer_free`](crate::ShootdownBatch::defer_free)).
///
/// A write to a shared frame copies it unless the writer's reference is
/// the last one ([`map_count`](Self::map_count) is 1: Linux's
/// `wp_can_reuse_anon_folio`): references are only added by a holder, so a
/// count of 1 seen by the holder stays 1 while it looks.
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
    // pub(crate): `FramePool::alloc_private` and the swap cache build
    // handles (each for a reference they counted).
    pub(crate) pool: alloc::sync::Arc<FramePool>,
    pub(crate) id: FrameId,
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

    /// Map references to the frame now (this one included), at least 1.
    pub fn map_count(&self) -> u64 {
        self.pool.private_map_count(self.id).unwrap_or(0)
    }

    /// One more map reference to the private frame `id` that the caller's
    /// page table entry holds (fork: the child's entry shares the parent's
    /// frame), handed out as a raw id for the new entry to own.
    ///
    /// # Errors
    /// [`Error::RefcountOverflow`](crate::Error::RefcountOverflow) (its
    /// `index` is the frame id) if the frame already has
    /// [`MAX_MAP_COUNT`](Self::MAX_MAP_COUNT) references; nothing changed.
    ///
    /// # Safety
    /// `id` must come from [`into_raw`](Self::into_raw) of a handle of this
    /// `pool`, and the reference the caller's entry holds must stay held
    /// until this returns (so the frame cannot be freed meanwhile).
    ///
    /// # Panics
    /// If the frame is free or a page map's.
    pub unsafe fn share_raw(
        pool: &alloc::sync::Arc<FramePool>,
        id: FrameId,
    ) -> Result<FrameId, crate::Error> {
        let f = pool.flags(id);
        assert!(
            f & (flags::FREE | flags::PAGEMAP) == 0,
            "PrivateFrame::share_raw of frame {id:?}, which is not a private frame ({f:#x})"
        );
        if pool.private_get(id, Self::MAX_MAP_COUNT) {
            // A shared frame is not lazily freeable (fuzz: a write after
            // MADV_FREE, then fork, then the parent's dirty entry gone, let
            // a swap-out drop the child's data).
            let _ = pool.private_update(id, |s| s.lazy().then(|| s.clear_lazy()));
            Ok(id)
        } else {
            Err(crate::Error::RefcountOverflow {
                index: u64::from(id.get()),
            })
        }
    }

    /// Makes the frame a candidate for reclaim: records its owner's rmap
    /// key (`owner`: an [`AnonOwner`](crate::swap::AnonOwner)'s id; `key`:
    /// its address of the page, vmr's virtual page number, which the
    /// owner's [`AnonRmap`](crate::swap::AnonRmap) gets back) and adds it to
    /// the pool's eviction policy (once: a frame already there keeps its
    /// place). Call it before the frame is published in an entry.
    pub fn make_evictable(&self, owner: u32, key: u64) {
        self.pool.set_private_rmap(self.id, owner, key);
        if self.pool.flags(self.id) & flags::LRU == 0 {
            self.pool.policy_add(self.id);
        }
    }

    /// The most map references a private frame counts.
    pub const MAX_MAP_COUNT: u64 = u32::MAX as u64;

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
        self.pool.private_release(self.id);
    }
}

impl fmt::Debug for PrivateFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PrivateFrame").field(&self.id).finish()
    }
}
