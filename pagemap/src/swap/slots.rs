//! The swap map and swap cache in one word per location: which locations
//! are in use, how many swap entries (page table entries of paged-out pages)
//! name each (Linux's `swap_map` counts), and which frame, if any, holds the
//! location's page now (Linux's swap cache, keyed by swap entry).
//!
//! ```text
//!  63    58  57   56   55                 32 31                      0
//! +--------+----+----+---------------------+-------------------------+
//! |   0    |ZERO|USED|   entries (refs)    |  cached frame id (or 0) |
//! +--------+----+----+---------------------+-------------------------+
//! ```
//!
//! A location is free when its word is 0. It is taken (USED) by a swap-out
//! with its frame cached; the swap-out's unmap adds one entry per page
//! table entry it turns into a swap entry, and fork one per entry it copies;
//! an unmap, a `MADV_DONTNEED` or a fault that maps the page back takes one
//! away. The location is freed by whichever change leaves it with no entry
//! and no cached frame. ZERO: the page was dropped without being written
//! (`MADV_FREE`): it reads as zeroes, without I/O. Every change is one CAS
//! of a pure transition.

use crate::sync::{AtomicU64, Ordering};

const FRAME: u64 = 0xffff_ffff;
const REFS_SHIFT: u32 = 32;
const REFS: u64 = 0xff_ffff << REFS_SHIFT;
const ONE_REF: u64 = 1 << REFS_SHIFT;
const USED: u64 = 1 << 56;
const ZERO: u64 = 1 << 57;

/// The most swap entries one location counts.
pub(crate) const MAX_ENTRIES: u32 = 0xff_ffff;

/// A location's word (a value).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Slot(pub(crate) u64);

impl Slot {
    pub(crate) fn used(self) -> bool {
        self.0 & USED != 0
    }

    /// Swap entries naming the location.
    pub(crate) fn entries(self) -> u32 {
        ((self.0 & REFS) >> REFS_SHIFT) as u32
    }

    /// The frame caching the location's page (0: none).
    pub(crate) fn frame(self) -> u32 {
        (self.0 & FRAME) as u32
    }

    /// Whether the page reads as zeroes (dropped without I/O).
    pub(crate) fn zero(self) -> bool {
        self.0 & ZERO != 0
    }

    /// The page leaves without being written: its entries read zeroes.
    pub(crate) fn set_zero(self) -> Slot {
        debug_assert!(self.used());
        Slot(self.0 | ZERO)
    }

    /// The page was written to the store: it reads from there again.
    pub(crate) fn clear_zero(self) -> Slot {
        Slot(self.0 & !ZERO)
    }

    /// A free location taken for `frame`'s page.
    pub(crate) fn take(self, frame: u32) -> Option<Slot> {
        (self.0 == 0 && frame != 0).then_some(Slot(USED | u64::from(frame)))
    }

    /// One more swap entry (a swap-out's unmap, fork): only while in use.
    pub(crate) fn dup(self) -> Option<Slot> {
        (self.used() && self.entries() < MAX_ENTRIES).then_some(Slot(self.0 + ONE_REF))
    }

    /// One swap entry fewer. The result is free (0) when that was the last
    /// entry and no frame caches the page.
    pub(crate) fn drop_entry(self) -> Slot {
        assert!(
            self.used() && self.entries() > 0,
            "swap entry dropped from {self:?}, which has none"
        );
        let left = Slot(self.0 - ONE_REF);
        if left.entries() == 0 && left.frame() == 0 {
            Slot(0)
        } else {
            left
        }
    }

    /// A swap-in's frame enters the cache (none cached, entries remain).
    pub(crate) fn cache(self, frame: u32) -> Option<Slot> {
        (self.used() && self.frame() == 0 && self.entries() > 0 && frame != 0)
            .then_some(Slot(self.0 | u64::from(frame)))
    }

    /// `frame` leaves the cache; free if no entry remains.
    pub(crate) fn uncache(self, frame: u32) -> Option<Slot> {
        if self.frame() != frame || frame == 0 {
            return None;
        }
        Some(if self.entries() == 0 {
            Slot(0)
        } else {
            Slot(self.0 & !FRAME)
        })
    }
}

/// One word per location, and where the next search for a free one starts.
pub(crate) struct SwapMap {
    words: alloc::boxed::Box<[AtomicU64]>,
    /// Where allocation looks next (a rotor: consecutive swap-outs get
    /// consecutive locations while there are free ones, as Linux's cluster
    /// allocator aims for).
    next: AtomicU64,
}

impl SwapMap {
    pub(crate) fn new(locations: u32) -> Self {
        Self {
            words: (0..locations).map(|_| AtomicU64::new(0)).collect(),
            next: AtomicU64::new(0),
        }
    }

    pub(crate) fn len(&self) -> u32 {
        self.words.len() as u32
    }

    /// The word of `loc` now. SeqCst, as every access to the words: a
    /// swap-in that caches a frame and a swap-out that uncaches one order
    /// against the frame's state word (see `swap::state`).
    pub(crate) fn get(&self, loc: u32) -> Slot {
        Slot(self.words[loc as usize].load(Ordering::SeqCst))
    }

    /// Applies `f` until it succeeds or refuses; the old word.
    pub(crate) fn update(
        &self,
        loc: u32,
        mut f: impl FnMut(Slot) -> Option<Slot>,
    ) -> Result<Slot, Slot> {
        let w = &self.words[loc as usize];
        let mut old = w.load(Ordering::SeqCst);
        loop {
            let Some(new) = f(Slot(old)) else {
                return Err(Slot(old));
            };
            match w.compare_exchange_weak(old, new.0, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(Slot(old)),
                Err(seen) => old = seen,
            }
        }
    }

    /// Takes a free location for `frame`, scanning from the rotor once
    /// around; `None` if every location is in use.
    pub(crate) fn alloc(&self, frame: u32) -> Option<u32> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        // Relaxed: a hint; the CAS on the word decides.
        let start = (self.next.load(Ordering::Relaxed) % u64::from(n)) as u32;
        for i in 0..n {
            let loc = (start + i) % n;
            if self.get(loc).0 != 0 {
                continue;
            }
            if self.update(loc, |s| s.take(frame)).is_ok() {
                self.next.store(u64::from(loc) + 1, Ordering::Relaxed);
                return Some(loc);
            }
        }
        None
    }

    /// Locations in use now (a count over the words: statistics).
    pub(crate) fn in_use(&self) -> u32 {
        self.words
            .iter()
            .filter(|w| w.load(Ordering::Relaxed) != 0)
            .count() as u32
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_location_lives_while_entries_or_a_frame_hold_it() {
        let s = Slot(0).take(9).unwrap();
        assert!(s.used() && s.frame() == 9 && s.entries() == 0);
        assert_eq!(s.take(3), None, "in use");
        let two = s.dup().unwrap().dup().unwrap();
        assert_eq!(two.entries(), 2);
        assert_eq!(
            Slot(0).dup(),
            None,
            "a free location has no entries to copy"
        );
        let out = two.uncache(9).unwrap();
        assert_eq!((out.frame(), out.entries()), (0, 2), "paged out");
        assert_eq!(two.uncache(8), None, "another frame");
        let one = out.drop_entry();
        assert_eq!(one.entries(), 1);
        assert_eq!(one.drop_entry(), Slot(0), "the last entry frees it");
        let back = one.cache(4).unwrap();
        assert_eq!(back.frame(), 4);
        assert_eq!(back.cache(5), None, "one frame caches it");
        assert_eq!(out.drop_entry().drop_entry(), Slot(0));
        assert_eq!(back.drop_entry().frame(), 4, "the cached frame keeps it");
        assert_eq!(back.drop_entry().uncache(4).unwrap(), Slot(0));
        assert_eq!(Slot(0).cache(4), None, "a free location caches nothing");
    }

    #[test]
    #[should_panic(expected = "has none")]
    fn dropping_an_entry_that_is_not_there_panics() {
        let _ = Slot(0).take(1).unwrap().drop_entry();
    }

    #[test]
    fn allocation_goes_round_and_fails_when_full() {
        let m = SwapMap::new(3);
        assert_eq!(m.alloc(1), Some(0));
        assert_eq!(m.alloc(2), Some(1));
        m.update(0, |s| s.uncache(1)).unwrap();
        assert_eq!(m.alloc(3), Some(2));
        assert_eq!(m.alloc(4), Some(0), "wraps to the freed one");
        assert_eq!(m.alloc(5), None);
        assert_eq!(m.in_use(), 3);
    }
}
