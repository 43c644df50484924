//! S3-FIFO: a small FIFO queue that new pages enter, a main FIFO queue
//! that pages referenced while in the small one are promoted to, and a ghost
//! queue remembering pages evicted from the small one.
//!
//! Source: Yang et al., "FIFO queues are all you need for cache eviction"
//! (SOSP 2023). Why this one: most pages of a scan, or of any one-hit
//! workload, are never touched again; S3-FIFO demotes them quickly (they
//! leave through the small queue, about 10% of the cache, after one pass)
//! so they cannot push the working set out of the main queue, where LRU
//! and CLOCK let them through the whole cache. A page evicted from the small
//! queue and faulted again soon after (a ghost hit, counted as a refault) goes
//! straight to the main queue, as Linux's shadow entries activate a page
//! that refaults within the working set's distance.
//!
//! The frequency is harvested, not counted per hit: every time a page
//! reaches a queue's tail, the pool's check test-and-clears its referenced
//! bit (and page-table accessed bits). In the small queue one reference
//! promotes the page; in the main queue a reference raises a 2-bit counter
//! and an unreferenced pass lowers it, the page being evicted at zero, so a
//! page referenced over several passes survives as many idle ones (up to 3).
//!
//! Costs: nothing on a hit; the mutex on add (plus a ghost look-up) and on
//! remove; in `select`, the mutex twice per candidate, never held across
//! `check`. The ghost is a table of `capacity` rounded up to a power of two
//! 8-byte entries, allocated once: direct-mapped fingerprints of evicted
//! pages' keys, each stamped with a counter of ghost insertions (as Linux's
//! shadow entries carry an eviction counter), valid while fewer than the
//! main queue's target of insertions followed.
//!
//! Frame word: the list links, then a 4-bit tag: the queue (2 bits: small,
//! main, or small and returned as a victim) and the counter (2 bits).

use alloc::boxed::Box;
use alloc::vec;

use super::list::{self, List};
use super::{chosen, Check, EvictionPolicy, PolicyFrames};
use crate::frame::FrameId;
use crate::sync::{AtomicU64, Mutex, Ordering};

/// Tag queue bits: in the small queue.
const SMALL: u8 = 1;
/// In the main queue.
const MAIN: u8 = 2;
/// In the small queue, and returned by `select` as a victim: if it is
/// removed, it was evicted cold and its key goes to the ghost.
const SMALL_VICTIM: u8 = 3;
const QUEUE_MASK: u8 = 3;
const FREQ_SHIFT: u32 = 2;
/// The counter saturates here.
const MAX_FREQ: u8 = 3;

/// The small queue's share of the tracked pages, in tenths (the paper's
/// 10%).
const SMALL_TENTHS: usize = 1;

/// Ghost entry: a 24-bit fingerprint over a 40-bit insertion stamp (0:
/// empty; stamps start at 1).
const STAMP_BITS: u32 = 40;
const STAMP_MASK: u64 = (1 << STAMP_BITS) - 1;

#[inline]
fn tag_of(queue: u8, freq: u8) -> u8 {
    debug_assert!(freq <= MAX_FREQ);
    queue | (freq << FREQ_SHIFT)
}

/// A 64-bit mix of a key (the splitmix64 finaliser), so that the slot and
/// the fingerprint come from independent-looking bits.
#[inline]
fn mix(key: u64) -> u64 {
    let mut z = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Keys of pages recently evicted from the small queue.
#[derive(Debug)]
struct Ghost {
    /// Direct-mapped entries; the length is a power of two.
    table: Box<[u64]>,
    /// Insertions so far (the last stamp given).
    stamp: u64,
    /// An entry is valid while fewer than this many insertions followed it.
    window: u64,
}

impl Ghost {
    fn new(capacity: usize) -> Self {
        let slots = capacity.max(1).next_power_of_two();
        Self {
            table: vec![0; slots].into_boxed_slice(),
            stamp: 0,
            // The paper's ghost holds as many keys as the main queue.
            window: (capacity - capacity * SMALL_TENTHS / 10).max(1) as u64,
        }
    }

    #[inline]
    fn slot_and_fingerprint(&self, key: u64) -> (usize, u64) {
        let h = mix(key);
        let slot = (h as usize) & (self.table.len() - 1);
        (slot, h >> STAMP_BITS)
    }

    fn insert(&mut self, key: u64) {
        let (slot, fp) = self.slot_and_fingerprint(key);
        // Wraps after 2^40 evictions: an old entry could then look fresh
        // once, costing one misplaced page.
        self.stamp = (self.stamp + 1) & STAMP_MASK;
        if self.stamp == 0 {
            self.stamp = 1;
        }
        self.table[slot] = (fp << STAMP_BITS) | self.stamp;
    }

    /// Whether `key` was inserted within the window; forgets it if so.
    fn take(&mut self, key: u64) -> bool {
        let (slot, fp) = self.slot_and_fingerprint(key);
        let e = self.table[slot];
        if e == 0 || e >> STAMP_BITS != fp {
            return false;
        }
        let age = self.stamp.wrapping_sub(e & STAMP_MASK) & STAMP_MASK;
        self.table[slot] = 0;
        age < self.window
    }
}

#[derive(Debug)]
struct State {
    small: List,
    main: List,
    ghost: Ghost,
}

impl State {
    /// Whether the next candidate comes from the small queue.
    fn take_small(&self) -> bool {
        let target = ((self.small.len() + self.main.len()) * SMALL_TENTHS / 10).max(1);
        self.small.len() >= target || self.main.len() == 0
    }
}

/// S3-FIFO over a pool's frames.
#[derive(Debug)]
pub struct S3Fifo {
    /// Frames in the pool.
    capacity: usize,
    state: Mutex<State>,
    /// Ghost hits.
    refaults: AtomicU64,
}

impl S3Fifo {
    /// S3-FIFO for a pool of `capacity` frames; allocates its ghost table
    /// (`capacity` rounded up to a power of two, 8 bytes each).
    ///
    /// # Panics
    ///
    /// If `capacity` exceeds [`MAX_FRAMES`](super::MAX_FRAMES) (the links
    /// are 30-bit frame ids).
    pub fn new(capacity: usize) -> Self {
        list::check_capacity(capacity);
        Self {
            capacity,
            state: Mutex::new(State {
                small: List::new(),
                main: List::new(),
                ghost: Ghost::new(capacity),
            }),
            refaults: AtomicU64::new(0),
        }
    }

    /// Pages in the small and in the main queue.
    pub fn lens(&self) -> (usize, usize) {
        let s = self.state.lock();
        (s.small.len(), s.main.len())
    }

    /// The small and main queues from head to tail (tests).
    #[cfg(all(test, not(pagemap_loom)))]
    pub(super) fn queues(
        &self,
        frames: &PolicyFrames<'_>,
    ) -> (alloc::vec::Vec<FrameId>, alloc::vec::Vec<FrameId>) {
        let s = self.state.lock();
        (
            s.small.iter(frames).collect(),
            s.main.iter(frames).collect(),
        )
    }

    /// Applies the check's answer `r` on candidate `id`; true if it is a
    /// victim.
    fn judge(&self, frames: &PolicyFrames<'_>, id: FrameId, r: Check) -> bool {
        let mut s = self.state.lock();
        let t = list::tag(frames, id);
        let (queue, freq) = (t & QUEUE_MASK, t >> FREQ_SHIFT);
        match (queue, r) {
            // Removed while it was checked.
            (0, _) => false,
            (SMALL | SMALL_VICTIM, Check::Referenced) => {
                s.small.unlink(frames, id);
                s.main.push_head(frames, id, tag_of(MAIN, 1));
                false
            }
            (SMALL | SMALL_VICTIM, Check::Unreferenced) => {
                list::set_tag(frames, id, tag_of(SMALL_VICTIM, freq));
                true
            }
            (SMALL | SMALL_VICTIM, Check::Busy) => {
                list::set_tag(frames, id, tag_of(SMALL, freq));
                false
            }
            (MAIN, Check::Referenced) => {
                list::set_tag(frames, id, tag_of(MAIN, (freq + 1).min(MAX_FREQ)));
                false
            }
            (MAIN, Check::Unreferenced) if freq > 0 => {
                list::set_tag(frames, id, tag_of(MAIN, freq - 1));
                false
            }
            (MAIN, Check::Unreferenced) => true,
            (MAIN, Check::Busy) => false,
            _ => unreachable!("bad S3-FIFO tag {t:#x} on {id:?}"),
        }
    }
}

impl EvictionPolicy for S3Fifo {
    fn name(&self) -> &'static str {
        "s3fifo"
    }

    fn add(&self, frames: &PolicyFrames<'_>, id: FrameId) {
        debug_assert_eq!(frames.capacity(), self.capacity);
        let key = frames.key(id);
        let mut s = self.state.lock();
        if s.ghost.take(key) {
            // Relaxed: a statistic.
            self.refaults.fetch_add(1, Ordering::Relaxed);
            s.main.push_head(frames, id, tag_of(MAIN, 0));
        } else {
            s.small.push_head(frames, id, tag_of(SMALL, 0));
        }
    }

    fn remove(&self, frames: &PolicyFrames<'_>, id: FrameId) {
        let key = frames.key(id);
        let mut s = self.state.lock();
        match list::tag(frames, id) & QUEUE_MASK {
            SMALL => {
                s.small.unlink(frames, id);
            }
            SMALL_VICTIM => {
                s.small.unlink(frames, id);
                s.ghost.insert(key);
            }
            MAIN => {
                s.main.unlink(frames, id);
            }
            _ => panic!("{id:?} removed but not added"),
        }
    }

    fn select(
        &self,
        frames: &PolicyFrames<'_>,
        check: &mut dyn FnMut(FrameId) -> Check,
        out: &mut [FrameId],
    ) -> usize {
        let mut n = 0;
        // A main-queue page may need MAX_FREQ idle passes before it is
        // evictable, and a small-queue page one pass to be promoted first.
        let mut budget = {
            let (small, main) = self.lens();
            (usize::from(MAX_FREQ) + 2) * (small + main)
        };
        // Busy (or already chosen) pages met in a row in the small queue:
        // once a whole rotation of it gave nothing new, the main queue's
        // pages are the only candidates left, whatever the small queue's
        // share.
        let mut small_busy = 0;
        while n < out.len() && budget > 0 {
            budget -= 1;
            let (id, from_small) = {
                let mut s = self.state.lock();
                let small = s.take_small() && (small_busy < s.small.len() || s.main.len() == 0);
                let q = if small { &mut s.small } else { &mut s.main };
                let Some(id) = q.tail() else { break };
                // Rotated before the check, so that concurrent reclaimers
                // take different candidates.
                q.move_to_head(frames, id);
                (id, small)
            };
            if chosen(out, n, id) {
                small_busy += usize::from(from_small);
                continue;
            }
            // The lock is dropped: `check` may take the pool's locks.
            let r = check(id);
            if from_small {
                small_busy = if r == Check::Busy { small_busy + 1 } else { 0 };
            }
            if self.judge(frames, id, r) {
                out[n] = id;
                n += 1;
            }
        }
        n
    }

    fn refaults(&self) -> u64 {
        // Relaxed: a statistic.
        self.refaults.load(Ordering::Relaxed)
    }
}
