//! Page table entry words.
//!
//! ```text
//!  63       44 43            12 11  9  8     7      6    5     4      3      2       1       0
//! +-----------+----------------+-----+----+------+----+-----+-------+-----+--------+-------+-------+
//! | location  |    frame id    |  0  |SWAP|MLOCK |LOCK| COW |PRIVATE|DIRTY|ACCESSED|WRITABLE|PRESENT|
//! +-----------+----------------+-----+----+------+----+-----+-------+-----+--------+-------+-------+
//! ```
//!
//! A **swap entry** (Linux's `swp_entry_t` in a PTE) is a word with SWAP set,
//! nothing else but its swap location in bits 44..64 (so [`frame`] of it is
//! 0: no path that looks for a frame can mistake it for one): the page was
//! paged out, and a fault on it pages it back in
//! ([`pagemap::swap::Swap::lookup`]).
//!
//! A word with a frame but without PRESENT is "mapped, not present" (PROT_NONE
//! on a private frame, or a page a remover is taking away): the frame stays
//! recorded so nothing is lost, and an access faults.
//!
//! A simulated CPU sets ACCESSED and DIRTY concurrently with the kernel side,
//! so every read-modify-write of a PTE is one atomic operation (Akaros lost
//! dirty bits with plain read-modify-writes: defect 5).

use crate::sync::{AtomicU64, Ordering};

/// One page table entry word. Every access is SeqCst; the reasons are stated
/// here once instead of at each of its uses:
///
/// 1. **CPU walks vs shootdowns.** A CPU sets its bit in the space's CPU mask
///    (SeqCst), then reads the entry (SeqCst); a kernel path changes the entry
///    (SeqCst), then its shootdown reads the mask (SeqCst). A store-buffering
///    pair: either the CPU sees the new entry or the shootdown sees the CPU
///    and waits for its TLB (`Machine::shootdown`).
/// 2. **Unmaps in flight.** A zap or revoke that reads an entry an unmapper
///    cleared reads from the unmapper's swap (a release), so it then sees the
///    unmapper's `flush_pending` count (`MmCore::begin_flush_pending`).
/// 3. **A/D bits.** CPUs set ACCESSED and DIRTY while the kernel side changes
///    entries, so every change is one atomic read-modify-write that re-checks
///    the entry ([`update`](Self::update), [`cas`](Self::cas),
///    [`swap`](Self::swap)); a load followed by a store would lose a dirty
///    bit set in between (Akaros's defect 5). Plain [`store`](Self::store) is
///    only for an entry nobody else may change: one this thread holds locked
///    (LOCK) or one in a table nobody else can see yet (fork's child).
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct PteCell(AtomicU64);

impl PteCell {
    /// An empty entry.
    pub fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// The entry now.
    #[inline]
    pub fn load(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Overwrites an entry nobody else may change (see the type's docs).
    #[inline]
    pub fn store(&self, pte: u64) {
        self.0.store(pte, Ordering::SeqCst)
    }

    /// Replaces the entry, returning the old one.
    #[inline]
    pub fn swap(&self, pte: u64) -> u64 {
        self.0.swap(pte, Ordering::SeqCst)
    }

    /// Replaces `old` with `new` if the entry is still `old`; `Err(seen)`
    /// otherwise.
    #[inline]
    pub fn cas(&self, old: u64, new: u64) -> Result<u64, u64> {
        self.0
            .compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst)
    }

    /// Applies `f` until it succeeds or returns `None` (`Err(seen)`).
    #[inline]
    pub fn update(&self, mut f: impl FnMut(u64) -> Option<u64>) -> Result<u64, u64> {
        // fetch_update's loop, written out (it is deprecated on nightly).
        let mut old = self.0.load(Ordering::SeqCst);
        loop {
            let Some(new) = f(old) else {
                return Err(old);
            };
            match self
                .0
                .compare_exchange_weak(old, new, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(v) => return Ok(v),
                Err(seen) => old = seen,
            }
        }
    }

    /// The raw word, for the page table's links between table pages (which
    /// use their own orderings; see `pagetable`).
    #[inline]
    pub(crate) fn raw(&self) -> &AtomicU64 {
        &self.0
    }
}

/// Translations may be used.
pub const PRESENT: u64 = 1 << 0;
/// Writes allowed.
pub const WRITABLE: u64 = 1 << 1;
/// Set by a CPU on the first access through the entry.
pub const ACCESSED: u64 = 1 << 2;
/// Set by a CPU on the first write through the entry.
pub const DIRTY: u64 = 1 << 3;
/// The frame is a private copy owned by this entry (never in a page map).
pub const PRIVATE: u64 = 1 << 4;
/// Read-only because the mapping is private: a write copies the page.
pub const COW: u64 = 1 << 5;
/// Kernel-side lock of a multi-step change (copy on write): set together
/// with clearing PRESENT, so CPUs fault; other kernel updaters wait for it.
pub const LOCK: u64 = 1 << 6;

/// A private frame of a locked (mlocked) mapping: reclaim never pages it
/// out, so a fault on it never waits for I/O.
pub const MLOCKED: u64 = 1 << 7;
/// A swap entry (see the module docs): not present, the location above.
pub const SWAP: u64 = 1 << 8;

const LOC_SHIFT: u32 = 44;
/// The most swap locations an entry can name (20 bits: 4 GiB of swap).
pub const MAX_SWAP_LOCATIONS: u32 = 1 << 20;

/// A swap entry for `loc` (below [`MAX_SWAP_LOCATIONS`]).
#[inline]
pub fn swap_entry(loc: u32) -> u64 {
    assert!(loc < MAX_SWAP_LOCATIONS, "swap location {loc} too large");
    (u64::from(loc) << LOC_SHIFT) | SWAP
}

/// The swap location of a swap entry (`None` if `pte` is not one).
#[inline]
pub fn swap_location(pte: u64) -> Option<u32> {
    (pte & SWAP != 0).then_some((pte >> LOC_SHIFT) as u32)
}

const FRAME_SHIFT: u32 = 12;
const FRAME_MASK: u64 = 0xffff_ffff << FRAME_SHIFT;

/// Frame id of a PTE (0: none).
#[inline]
pub const fn frame(pte: u64) -> u32 {
    ((pte & FRAME_MASK) >> FRAME_SHIFT) as u32
}

/// A PTE for `frame` with `flags`.
#[inline]
pub fn make(frame: u32, flags: u64) -> u64 {
    assert!(frame != 0, "PTE for frame 0");
    debug_assert_eq!(flags & FRAME_MASK, 0);
    ((frame as u64) << FRAME_SHIFT) | flags
}

/// Whether a CPU may use it for an access (`write`: a write).
#[inline]
pub const fn allows(pte: u64, write: bool) -> bool {
    pte & PRESENT != 0 && (!write || pte & WRITABLE != 0)
}

/// The hardware's A/D update for an access through `pte`; `None` if the
/// access must fault instead.
#[inline]
pub fn touched(pte: u64, write: bool) -> Option<u64> {
    allows(pte, write).then_some(pte | ACCESSED | if write { DIRTY } else { 0 })
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;

    #[test]
    fn encode_and_touch() {
        let p = make(0xdead_beef, PRESENT);
        assert_eq!(frame(p), 0xdead_beef);
        assert_eq!(touched(p, false), Some(p | ACCESSED));
        assert_eq!(touched(p, true), None, "read-only");
        let w = p | WRITABLE;
        assert_eq!(touched(w, true), Some(w | ACCESSED | DIRTY));
        assert_eq!(touched(make(1, WRITABLE), false), None, "not present");
        let s = swap_entry(MAX_SWAP_LOCATIONS - 1);
        assert_eq!(frame(s), 0, "a swap entry names no frame");
        assert_eq!(swap_location(s), Some(MAX_SWAP_LOCATIONS - 1));
        assert_eq!(swap_location(swap_entry(0)), Some(0));
        assert_eq!(swap_location(p), None);
        assert_eq!(touched(s, false), None, "not present");
    }
}
