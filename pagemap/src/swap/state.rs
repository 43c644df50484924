//! The state word of a private frame (an anonymous page, a private
//! copy-on-write copy): its map references and its place in the swap cache,
//! packed in one `AtomicU64` of the frame's metadata, changed only by the
//! small pure transitions below (applied with a CAS loop:
//! `FramePool::private_update`).
//!
//! ```text
//!  63          40 39  36   35     34     33     32  31                 0
//! +--------------+------+------+------+------+----+-------------------+
//! |   location   |  0   | LAZY |BACKED|CACHED| 0  | map refs (refs)   |
//! +--------------+------+------+------+------+----+-------------------+
//! ```
//!
//! * **refs**: page table entries naming the frame, plus handles
//!   ([`PrivateFrame`](crate::PrivateFrame)) not yet turned into entries.
//!   Linux's `mapcount` of an anonymous folio.
//! * **CACHED**: the frame is in the swap cache at `location` (the
//!   location's word names it back: `swap::slots`). Set by a swap-out
//!   before it unmaps the page and by a swap-in before its read; cleared
//!   when the page leaves the cache (freed after a swap-out, or made
//!   writable by a write fault). A cached frame is not freed when its last
//!   reference goes: the swap cache keeps it until reclaim or the last swap
//!   entry of its location lets it go.
//! * **BACKED**: the location holds a clean copy of the frame (the Zephyr
//!   seed's `Z_PAGE_FRAME_BACKED`): a swap-out of a page whose entries are
//!   all clean writes nothing.
//! * **LAZY**: `MADV_FREE` was advised and no entry has been dirty since
//!   (Linux's lazyfree folio): a swap-out may drop the page without writing
//!   it (its swap entries then read zeroes). A dirty entry found by the
//!   swap-out's unmap clears it (the page is written as any other).
//! * **location**: the swap slot, valid while CACHED (24 bits: a swap
//!   store of at most 2^24 pages, 64 GiB).
//!
//! BUSY (the page is being swapped in or out) is not here but a lock bit of
//! the frame's flags word (`flags::BUSY`), so that waiters sleep in the
//! frame's wait bucket as they do for the page lock. A fault that takes a
//! reference from the swap cache adds it here first and then reads BUSY; a
//! swap-out sets BUSY and reads the references last, after its walk: both
//! SeqCst, so one of them sees the other (a store-buffering pair), and
//! either the fault backs off or the swap-out finds the reference and keeps
//! the page.

/// Map references (bits 0..32).
pub(crate) const REFS: u64 = 0xffff_ffff;
/// In the swap cache at `location`.
pub(crate) const CACHED: u64 = 1 << 33;
/// The location holds a clean copy.
pub(crate) const BACKED: u64 = 1 << 34;
/// `MADV_FREE`d and clean since.
pub(crate) const LAZY: u64 = 1 << 35;
/// Shift of the location.
pub(crate) const LOC_SHIFT: u32 = 40;
/// The most locations a swap space may have (24 bits of the word).
pub(crate) const MAX_LOCATIONS: u32 = 1 << 24;

/// A private frame's state word (a value: transitions return new ones).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct State(pub(crate) u64);

impl core::fmt::Debug for State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("State")
            .field("refs", &self.refs())
            .field("cached", &self.cached())
            .field("backed", &self.backed())
            .field("location", &self.location())
            .finish()
    }
}

impl State {
    /// Map references.
    pub(crate) fn refs(self) -> u64 {
        self.0 & REFS
    }

    /// Whether the frame is in the swap cache.
    pub(crate) fn cached(self) -> bool {
        self.0 & CACHED != 0
    }

    /// Whether its location holds a clean copy.
    pub(crate) fn backed(self) -> bool {
        self.0 & BACKED != 0
    }

    /// Whether `MADV_FREE` left it droppable (see the module docs).
    pub(crate) fn lazy(self) -> bool {
        self.0 & LAZY != 0
    }

    /// `MADV_FREE` of a frame its caller alone maps, not in the cache.
    pub(crate) fn set_lazy(self) -> Option<State> {
        (self.refs() == 1 && !self.cached()).then_some(State(self.0 | LAZY))
    }

    /// Shared by a fork: no longer droppable (`MADV_FREE` applies to a
    /// page its advisor alone maps; the new entry may not carry the dirty
    /// bit of a write made after the advice).
    pub(crate) fn clear_lazy(self) -> State {
        State(self.0 & !LAZY)
    }

    /// Its swap location (meaningful while cached).
    pub(crate) fn location(self) -> u32 {
        (self.0 >> LOC_SHIFT) as u32
    }

    /// One more reference by a holder (fork), refused at `max`.
    pub(crate) fn share(self, max: u64) -> Option<State> {
        (self.refs() < max.min(REFS)).then_some(State(self.0 + 1))
    }

    /// One more reference taken from the swap cache at `loc` (a fault on a
    /// swap entry): only while the frame is still cached there.
    pub(crate) fn get_cached(self, loc: u32) -> Option<State> {
        (self.cached() && self.location() == loc && self.refs() < REFS).then_some(State(self.0 + 1))
    }

    /// One reference fewer (the caller held one).
    pub(crate) fn put(self) -> State {
        debug_assert!(self.refs() > 0, "put without a reference: {self:?}");
        State(self.0.wrapping_sub(1))
    }

    /// Nothing keeps the frame: no reference, not in the swap cache. The
    /// transition that produced this state frees the frame.
    pub(crate) fn released(self) -> bool {
        self.refs() == 0 && !self.cached()
    }

    /// Enters the swap cache at `loc` (not cached before).
    pub(crate) fn cache(self, loc: u32, backed: bool) -> Option<State> {
        debug_assert!(loc < MAX_LOCATIONS);
        (!self.cached()).then_some(State(
            (self.0 & (REFS | LAZY))
                | CACHED
                | if backed { BACKED } else { 0 }
                | (u64::from(loc) << LOC_SHIFT),
        ))
    }

    /// Leaves the swap cache (clean copy forgotten too).
    pub(crate) fn uncache(self) -> State {
        State(self.0 & REFS)
    }

    /// The location now holds a clean copy (after a page-out or page-in).
    pub(crate) fn set_backed(self) -> State {
        debug_assert!(self.cached());
        State(self.0 | BACKED)
    }

    /// The frame's contents changed since its copy was written (a dirty
    /// entry was found, or a write-back failed): no clean copy, and no
    /// longer droppable after `MADV_FREE`.
    pub(crate) fn clear_backed(self) -> State {
        State(self.0 & !(BACKED | LAZY))
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        let fresh = State(1);
        assert!(!fresh.cached() && fresh.refs() == 1);
        let two = fresh.share(10).unwrap();
        assert_eq!(two.refs(), 2);
        assert_eq!(State(3).share(3), None, "at the limit");
        assert!(fresh.put().released());
        assert!(!two.put().released());
        let cached = fresh.cache(7, false).unwrap();
        assert!(cached.cached() && !cached.backed());
        assert_eq!(cached.location(), 7);
        assert_eq!(cached.cache(8, true), None, "cached once");
        assert!(!cached.put().released(), "the swap cache keeps it");
        assert_eq!(cached.put().get_cached(7).unwrap().refs(), 1);
        assert_eq!(cached.get_cached(6), None, "another location");
        assert_eq!(fresh.get_cached(7), None, "not cached");
        let backed = cached.set_backed();
        assert!(backed.backed());
        assert!(!backed.clear_backed().backed());
        assert_eq!(backed.uncache(), fresh);
        assert!(backed.put().uncache().released());
        let lazy = fresh.set_lazy().unwrap();
        assert!(lazy.lazy() && lazy.refs() == 1);
        assert_eq!(two.set_lazy(), None, "shared");
        assert_eq!(cached.set_lazy(), None, "cached");
        assert!(!lazy.clear_backed().lazy(), "a dirty entry keeps it");
        let top = State(0).cache(MAX_LOCATIONS - 1, true).unwrap();
        assert_eq!(top.location(), MAX_LOCATIONS - 1);
        assert_eq!(top.refs(), 0);
    }
}
