//! An intrusive doubly linked list of frames threaded through their policy
//! words, for the list-based policies.
//!
//! Word layout: bits 0..30 the next frame's id (towards the tail), bits
//! 30..60 the previous one (towards the head), 0 meaning none; bits 60..64 a
//! tag the policy owns, non-zero while the frame is linked (so a word of 0
//! means "not tracked"). The caller holds the policy's lock around every
//! call: it orders the words, which are therefore accessed `Relaxed`.

use super::PolicyFrames;
use crate::frame::FrameId;
use crate::sync::Ordering;

/// Bits of a link.
const LINK_BITS: u32 = 30;
const LINK_MASK: u64 = (1 << LINK_BITS) - 1;
const TAG_SHIFT: u32 = 2 * LINK_BITS;

/// The most frames a list can hold: ids fit in 30 bits.
pub(super) const MAX_FRAMES: usize = (1 << LINK_BITS) - 1;

/// The largest tag (4 bits).
pub(super) const MAX_TAG: u8 = 0xf;

#[inline]
fn pack(prev: u32, next: u32, tag: u8) -> u64 {
    debug_assert!(u64::from(prev) <= LINK_MASK && u64::from(next) <= LINK_MASK);
    debug_assert!(tag != 0 && tag <= MAX_TAG, "a linked frame has a tag");
    u64::from(next) | (u64::from(prev) << LINK_BITS) | (u64::from(tag) << TAG_SHIFT)
}

#[inline]
fn next_of(w: u64) -> u32 {
    (w & LINK_MASK) as u32
}

#[inline]
fn prev_of(w: u64) -> u32 {
    ((w >> LINK_BITS) & LINK_MASK) as u32
}

/// The tag of a frame's word (0: not linked).
#[inline]
pub(super) fn tag(frames: &PolicyFrames<'_>, id: FrameId) -> u8 {
    // Relaxed: under the policy's lock (module doc).
    (frames.word(id).load(Ordering::Relaxed) >> TAG_SHIFT) as u8
}

/// Replaces the tag of a linked frame.
#[inline]
pub(super) fn set_tag(frames: &PolicyFrames<'_>, id: FrameId, tag: u8) {
    let w = frames.word(id).load(Ordering::Relaxed);
    debug_assert!(w >> TAG_SHIFT != 0, "{id:?} is not linked");
    // Relaxed: under the policy's lock (module doc).
    frames
        .word(id)
        .store(pack(prev_of(w), next_of(w), tag), Ordering::Relaxed);
}

/// Checks that a capacity fits the links.
///
/// # Panics
///
/// If `capacity` exceeds [`MAX_FRAMES`].
pub(super) fn check_capacity(capacity: usize) {
    assert!(
        capacity <= MAX_FRAMES,
        "{capacity} frames: list-based policies link 30-bit frame ids"
    );
}

/// Head, tail and length of one list; the links are in the words.
#[derive(Default, Debug)]
pub(super) struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl List {
    /// An empty list.
    pub(super) const fn new() -> Self {
        Self {
            head: 0,
            tail: 0,
            len: 0,
        }
    }

    /// Frames linked.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The frame at the tail (the oldest), if any.
    #[inline]
    pub(super) fn tail(&self) -> Option<FrameId> {
        FrameId::new(self.tail)
    }

    /// Links `id`, which must not be linked, at the head with `tag`.
    pub(super) fn push_head(&mut self, frames: &PolicyFrames<'_>, id: FrameId, tag: u8) {
        let word = frames.word(id);
        debug_assert_eq!(
            word.load(Ordering::Relaxed),
            0,
            "{id:?} linked twice or its word not zeroed"
        );
        let raw = id.get();
        // Relaxed: under the policy's lock (module doc).
        word.store(pack(0, self.head, tag), Ordering::Relaxed);
        match FrameId::new(self.head) {
            Some(old) => {
                let w = frames.word(old).load(Ordering::Relaxed);
                debug_assert_eq!(prev_of(w), 0);
                frames.word(old).store(
                    pack(raw, next_of(w), (w >> TAG_SHIFT) as u8),
                    Ordering::Relaxed,
                );
            }
            None => self.tail = raw,
        }
        self.head = raw;
        self.len += 1;
    }

    /// Unlinks `id`, which must be on this list; returns its tag and leaves
    /// its word zero.
    pub(super) fn unlink(&mut self, frames: &PolicyFrames<'_>, id: FrameId) -> u8 {
        let w = frames.word(id).load(Ordering::Relaxed);
        let tag = (w >> TAG_SHIFT) as u8;
        assert!(tag != 0, "{id:?} unlinked but not linked");
        debug_assert!(self.len > 0);
        let (prev, next) = (prev_of(w), next_of(w));
        match FrameId::new(prev) {
            Some(p) => {
                let pw = frames.word(p).load(Ordering::Relaxed);
                frames.word(p).store(
                    pack(prev_of(pw), next, (pw >> TAG_SHIFT) as u8),
                    Ordering::Relaxed,
                );
            }
            None => {
                debug_assert_eq!(self.head, id.get(), "{id:?} on another list");
                self.head = next;
            }
        }
        match FrameId::new(next) {
            Some(n) => {
                let nw = frames.word(n).load(Ordering::Relaxed);
                frames.word(n).store(
                    pack(prev, next_of(nw), (nw >> TAG_SHIFT) as u8),
                    Ordering::Relaxed,
                );
            }
            None => {
                debug_assert_eq!(self.tail, id.get(), "{id:?} on another list");
                self.tail = prev;
            }
        }
        frames.word(id).store(0, Ordering::Relaxed);
        self.len -= 1;
        tag
    }

    /// Moves `id`, on this list, to its head, keeping its tag.
    pub(super) fn move_to_head(&mut self, frames: &PolicyFrames<'_>, id: FrameId) {
        if self.head == id.get() {
            return;
        }
        let tag = self.unlink(frames, id);
        self.push_head(frames, id, tag);
    }

    /// The frames from head to tail (tests and assertions).
    #[cfg(all(test, not(pagemap_loom)))]
    pub(super) fn iter<'f>(
        &self,
        frames: &'f PolicyFrames<'f>,
    ) -> impl Iterator<Item = FrameId> + 'f {
        let mut cur = FrameId::new(self.head);
        core::iter::from_fn(move || {
            let id = cur?;
            cur = FrameId::new(next_of(frames.word(id).load(Ordering::Relaxed)));
            Some(id)
        })
    }
}
