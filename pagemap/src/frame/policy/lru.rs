//! Exact LRU: one list of the cached pages in order of last use; every hit
//! moves its page to the most recently used end, victims come from the
//! other.
//!
//! Source: the seed's recommended policy, and the benchmark's baseline.
//! Costs: the list's mutex on every hit (so it does not scale with readers:
//! the reason the others exist), on add and on remove; in `select`, the
//! mutex per candidate, never held across `check`.
//!
//! Hits arrive through `accessed`; `Check::Referenced` then reports only
//! page-table accessed bits, which a hit never saw. A referenced or busy
//! candidate moves to the most recently used end, and so does a victim
//! (before it is returned: the next `select` will not return it at once,
//! and it stays linked until `remove`).

use super::list::{self, List};
use super::{chosen, Check, EvictionPolicy, PolicyFrames};
use crate::frame::FrameId;
use crate::sync::Mutex;

/// The tag of a linked frame.
const LINKED: u8 = 1;

/// Exact LRU over a pool's frames.
#[derive(Debug)]
pub struct Lru {
    /// Frames in the pool.
    capacity: usize,
    /// Head: most recently used; tail: least.
    list: Mutex<List>,
}

impl Lru {
    /// Exact LRU for a pool of `capacity` frames.
    ///
    /// # Panics
    ///
    /// If `capacity` exceeds [`MAX_FRAMES`](super::MAX_FRAMES) (the links
    /// are 30-bit frame ids).
    pub fn new(capacity: usize) -> Self {
        list::check_capacity(capacity);
        Self {
            capacity,
            list: Mutex::new(List::new()),
        }
    }

    /// Frames tracked.
    pub fn len(&self) -> usize {
        self.list.lock().len()
    }

    /// Whether no frame is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frames from most to least recently used (tests).
    #[cfg(all(test, not(pagemap_loom)))]
    pub(super) fn order(&self, frames: &PolicyFrames<'_>) -> alloc::vec::Vec<FrameId> {
        self.list.lock().iter(frames).collect()
    }
}

impl EvictionPolicy for Lru {
    fn name(&self) -> &'static str {
        "lru"
    }

    fn add(&self, frames: &PolicyFrames<'_>, id: FrameId) {
        debug_assert_eq!(frames.capacity(), self.capacity);
        self.list.lock().push_head(frames, id, LINKED);
    }

    fn remove(&self, frames: &PolicyFrames<'_>, id: FrameId) {
        self.list.lock().unlink(frames, id);
    }

    fn tracks_every_access(&self) -> bool {
        true
    }

    fn accessed(&self, frames: &PolicyFrames<'_>, id: FrameId) {
        let mut list = self.list.lock();
        // A hit racing with the page's removal may come after it: nothing to
        // move then.
        if list::tag(frames, id) == LINKED {
            list.move_to_head(frames, id);
        }
    }

    fn select(
        &self,
        frames: &PolicyFrames<'_>,
        check: &mut dyn FnMut(FrameId) -> Check,
        out: &mut [FrameId],
    ) -> usize {
        let mut n = 0;
        // Every candidate rotates to the head, so two passes see each frame
        // twice: the first may only clear its accessed bits.
        let mut budget = 2 * self.len();
        while n < out.len() && budget > 0 {
            budget -= 1;
            let id = {
                let mut list = self.list.lock();
                let Some(id) = list.tail() else { break };
                list.move_to_head(frames, id);
                id
            };
            // The lock is dropped: `check` may take the pool's locks.
            if !chosen(out, n, id) && check(id) == Check::Unreferenced {
                out[n] = id;
                n += 1;
            }
        }
        n
    }
}
