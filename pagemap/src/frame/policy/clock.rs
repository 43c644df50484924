//! CLOCK (second chance): a hand sweeps the frame array; a frame whose page
//! was referenced since the hand last passed loses its referenced bit (the
//! check clears it) and is spared, the first unreferenced one is the victim.
//!
//! Source: Corbató's CLOCK (1968), the approximation of LRU that Linux's
//! page-frame reclaim and most kernels' pagers build on. Costs: nothing on a
//! hit (the pool's referenced bit, or the page-table accessed bits);
//! one relaxed store on add and on remove; no lock at all in `select`: each
//! reclaimer claims the frames it inspects from the shared hand with one
//! `fetch_add`, so concurrent reclaimers sweep disjoint frames instead of
//! serialising. Frames the pool frees are allocated again right behind the
//! hand, which is CLOCK's insertion point.

use super::{chosen, Check, EvictionPolicy, PolicyFrames};
use crate::frame::FrameId;
use crate::sync::{AtomicUsize, Ordering};

/// The word of a frame whose page CLOCK tracks (0: free or private frame).
const TRACKED: u64 = 1;

/// CLOCK over a pool's frames.
#[derive(Debug)]
pub struct Clock {
    /// Frames in the pool.
    capacity: usize,
    /// The next slot (frame id - 1, modulo `capacity`) the hand inspects.
    hand: AtomicUsize,
}

impl Clock {
    /// CLOCK for a pool of `capacity` frames.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            hand: AtomicUsize::new(0),
        }
    }
}

impl EvictionPolicy for Clock {
    fn name(&self) -> &'static str {
        "clock"
    }

    fn add(&self, frames: &PolicyFrames<'_>, id: FrameId) {
        debug_assert_eq!(frames.capacity(), self.capacity);
        // Relaxed: the word only lets `select` skip frames without asking
        // the pool; a stale value costs one check (a free frame answers
        // Busy) or one skipped frame, never a wrong victim.
        frames.word(id).store(TRACKED, Ordering::Relaxed);
    }

    fn remove(&self, frames: &PolicyFrames<'_>, id: FrameId) {
        // Relaxed: as in `add`.
        let was = frames.word(id).swap(0, Ordering::Relaxed);
        debug_assert_eq!(was, TRACKED, "{id:?} removed but not added");
    }

    fn select(
        &self,
        frames: &PolicyFrames<'_>,
        check: &mut dyn FnMut(FrameId) -> Check,
        out: &mut [FrameId],
    ) -> usize {
        debug_assert_eq!(frames.capacity(), self.capacity);
        let cap = self.capacity.min(frames.capacity());
        if cap == 0 || out.is_empty() {
            return 0;
        }
        let mut n = 0;
        // Two sweeps: the first may only clear referenced bits.
        for _ in 0..2 * cap {
            // Relaxed: the hand only spreads reclaimers over the frames; the
            // frames' own state is the pool's, read by `check`. (Wrapping
            // after 2^64 steps only moves the hand.)
            let slot = self.hand.fetch_add(1, Ordering::Relaxed) % cap;
            let id = frames.id_at(slot);
            // Relaxed: see `add`.
            if frames.word(id).load(Ordering::Relaxed) != TRACKED || chosen(out, n, id) {
                continue;
            }
            if check(id) == Check::Unreferenced {
                out[n] = id;
                n += 1;
                if n == out.len() {
                    break;
                }
            }
        }
        n
    }
}
