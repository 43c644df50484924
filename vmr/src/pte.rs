//! Page table entry words.
//!
//! ```text
//!  63       44 43            12 11    6   5     4      3      2       1       0
//! +-----------+----------------+-------+-----+-------+-----+--------+-------+-------+
//! | reserved  |    frame id    |LOCK(6)| COW |PRIVATE|DIRTY|ACCESSED|WRITABLE|PRESENT|
//! +-----------+----------------+-------+-----+-------+-----+--------+-------+-------+
//! ```
//!
//! A word with a frame but without PRESENT is "mapped, not present" (PROT_NONE
//! on a private frame, or a page a remover is taking away): the frame stays
//! recorded so nothing is lost, and an access faults.
//!
//! A simulated CPU sets ACCESSED and DIRTY concurrently with the kernel side,
//! so every read-modify-write of a PTE is one atomic operation (Akaros lost
//! dirty bits with plain read-modify-writes: defect 5).

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

#[cfg(all(test, not(loom)))]
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
    }
}
