//! [`AnonOwner`]: the private frames of one owner (an address-space layer:
//! vmr's machine) as the pool's reclaim sees them. Registered with the pool
//! beside the page maps, under an id from the same space, so a victim's
//! owner id leads reclaim either to its page map or to its `AnonOwner`,
//! which pages it out to swap.

use alloc::sync::Arc;

use super::device::{AnonRmap, Swap, SwapOut};
use crate::error::Error;
use crate::frame::{flags, Check, Evictor, FrameId, MapStats};
use crate::sync::{AtomicUsize, Ordering};
use crate::ReclaimReport;

/// The owner of private frames that reclaim may page out: the pool's
/// reclaim asks it whether a frame was referenced (through its
/// [`AnonRmap`]: the accessed bits of the entries naming the frame) and has
/// it swap victims out ([`Swap::swap_out`]). Frames join it with
/// [`PrivateFrame::make_evictable`](crate::PrivateFrame::make_evictable)
/// and its [`id`](Self::id).
///
/// Registered from [`AnonOwner::new`] until its drop, which waits for
/// reclaimers using it. The pool does not own it (the owner's user does):
/// hold it as long as its frames may be evicted.
pub struct AnonOwner {
    id: u32,
    swap: Arc<Swap>,
    rmap: Arc<dyn AnonRmap>,
    /// Reclaimers using it now (see `frame::reclaim`'s pins).
    pins: AtomicUsize,
}

impl core::fmt::Debug for AnonOwner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AnonOwner").field("id", &self.id).finish()
    }
}

impl AnonOwner {
    /// Registers `rmap`'s frames for reclaim into `swap` (whose pool's
    /// reclaim then pages them out).
    pub fn new(swap: Arc<Swap>, rmap: Arc<dyn AnonRmap>) -> Arc<AnonOwner> {
        let owner = Arc::new(AnonOwner {
            id: crate::map::next_owner_id(),
            swap,
            rmap,
            pins: AtomicUsize::new(0),
        });
        let ptr: core::ptr::NonNull<dyn Evictor> = core::ptr::NonNull::from(&*owner);
        // SAFETY: the pointee lives in the Arc's allocation, which outlives
        // the registration: our drop unregisters, then waits for the pins
        // reclaimers took, before the allocation is freed.
        unsafe { owner.swap.pool().register(owner.id, ptr) };
        owner
    }

    /// The id to give [`PrivateFrame::make_evictable`](crate::PrivateFrame::make_evictable).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The swap space.
    pub fn swap(&self) -> &Arc<Swap> {
        &self.swap
    }

    /// Pages out frame `f` now (the seed's `k_mem_page_frame_evict` for a
    /// private frame): see [`Swap::swap_out`].
    ///
    /// # Errors
    /// As [`Swap::swap_out`].
    pub fn evict(&self, f: FrameId) -> Result<SwapOut, Error> {
        if self.swap.pool().private_owner(f) != Some(self.id) {
            // Not ours (another owner's on a shared pool, a page map's,
            // free): its state word's location is not our swap's.
            return Ok(SwapOut::Kept);
        }
        self.swap.swap_out(f, &*self.rmap)
    }
}

impl Drop for AnonOwner {
    fn drop(&mut self) {
        self.swap.pool().unregister(self.id);
        let mine = crate::frame::mine::pins_of(self.id);
        // Acquire: pairs with the unpin's Release.
        while self.pins.load(Ordering::Acquire) > mine {
            #[cfg(all(feature = "std", not(pagemap_loom)))]
            std::thread::yield_now();
            #[cfg(not(all(feature = "std", not(pagemap_loom))))]
            crate::sync::spin_hint();
        }
    }
}

impl Evictor for AnonOwner {
    fn check(&self, key: u64, frame: FrameId, _hits_told: bool) -> (Check, bool) {
        if self.swap.pool().flags(frame) & flags::BUSY != 0 {
            return (Check::Busy, true);
        }
        if self.rmap.pinned(key, frame) {
            return (Check::Busy, false);
        }
        if self.rmap.referenced(key, frame) {
            (Check::Referenced, false)
        } else {
            (Check::Unreferenced, false)
        }
    }

    fn evict(&self, victims: &[(u64, FrameId)], _wait: bool, report: &mut ReclaimReport) {
        // One shootdown per address space per batch (the reclaim's group
        // is at most RECLAIM_BATCH frames: no allocation).
        for chunk in victims.chunks(crate::RECLAIM_BATCH) {
            let mut frames = [FrameId::new(1).expect("1 is a frame id"); crate::RECLAIM_BATCH];
            let mut out: [Result<SwapOut, Error>; crate::RECLAIM_BATCH] =
                core::array::from_fn(|_| Ok(SwapOut::Kept));
            let mut n = 0;
            for &(_, f) in chunk {
                if self.swap.pool().private_owner(f) == Some(self.id) {
                    frames[n] = f;
                    n += 1;
                } else {
                    report.kept += 1;
                }
            }
            self.swap
                .swap_out_batch(&frames[..n], &*self.rmap, &mut out[..n]);
            for (r, &f) in out[..n].iter().zip(&frames[..n]) {
                if matches!(r, Ok(SwapOut::Kept)) && self.swap.pool().flags(f) & flags::BUSY != 0 {
                    // Kept because another move of it is under way: in
                    // flight (a tiny pool's allocation keeps trying). A
                    // victim kept for good (its entry locked by the copy
                    // being made from it) is not: reclaim then asks for
                    // more victims, past it (the swap_ops fuzzer: a pool
                    // chose the same kept victim 4096 times).
                    report.in_flight += 1;
                }
                match r {
                    Ok(SwapOut::Freed { written }) => {
                        report.freed += 1;
                        report.mapped += 1;
                        report.dirty += u64::from(*written);
                    }
                    Ok(SwapOut::Kept) => {
                        report.kept += 1;
                    }
                    Err(Error::SwapFull { .. }) => report.kept += 1,
                    Err(_) => {
                        report.kept += 1;
                        report.write_errors += 1;
                    }
                }
            }
        }
    }

    fn cache_only(&self, frame: FrameId) {
        self.swap.cache_dropped(frame);
    }

    fn map_stats(&self) -> MapStats {
        MapStats::default()
    }

    fn pin(&self) {
        // Relaxed: taken under the registry's read lock (see PageMap's).
        self.pins.fetch_add(1, Ordering::Relaxed);
    }

    fn unpin(&self) {
        // Release: pairs with the drop's Acquire.
        self.pins.fetch_sub(1, Ordering::Release);
    }
}
