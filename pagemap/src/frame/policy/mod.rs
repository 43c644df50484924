//! Eviction policies: which cached pages a full frame pool reclaims.
//!
//! The interface follows the split of a demand-paging kernel's eviction
//! hooks (the pool tells the policy when a page comes and goes and, for
//! policies that want it, of every hit; the policy proposes victims): one
//! policy per pool, whose per-frame state is a single 8-byte word in the
//! frame metadata ([`PolicyFrames`]), so tracking a page allocates nothing.
//!
//! Built in:
//!
//! | policy | source | hit | add / remove | select |
//! | --- | --- | --- | --- | --- |
//! | [`Clock`] | second chance (Corbató's CLOCK; Linux's referenced-bit scans) | nothing (the pool's referenced bit) | one relaxed store | no lock: the hand is claimed with `fetch_add` |
//! | [`Lru`] | exact LRU (the seed's recommendation; the benchmark baseline) | a mutex, a list move | a mutex | a mutex per candidate, not held across `check` |
//! | [`S3Fifo`] | S3-FIFO (Yang et al., SOSP 2023): scan-resistant | nothing (the pool's referenced bit) | a mutex (+ a ghost look-up on add) | a mutex per candidate, not held across `check` |
//!
//! The policies' locks are leaves: a policy never calls `check` (which may
//! look at page-table entries under the reverse-map lock) with one held, so
//! the pool may call `add`, `remove` and `accessed` under any of its locks.

mod clock;
mod list;
mod lru;
mod s3fifo;

use alloc::boxed::Box;

use crate::frame::FrameId;
use crate::sync::AtomicU64;

pub use clock::Clock;
pub use lru::Lru;
pub use s3fifo::S3Fifo;

/// What the pool says about a frame when a policy considers it for eviction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The page was accessed since the last check of this frame: a hit set
    /// its referenced bit, or a mapping's page-table entry has its accessed
    /// bit set (the check test-and-clears both). It deserves a second
    /// chance.
    Referenced,
    /// Not accessed since the last check, and evictable now as far as the
    /// pool knows: a candidate.
    Unreferenced,
    /// Not evictable now: held, locked, loading, under write-back, pinned,
    /// or not a cached page at all (a free or private frame).
    Busy,
}

/// The policy's view of the pool's frames: one 8-byte word per frame that
/// belongs to the policy alone, and the identity of the page each frame
/// caches.
///
/// Frame `id` owns `words[id.get() - 1]`. The pool zeroes a word before the
/// frame's page is added and never touches it otherwise.
pub struct PolicyFrames<'a> {
    words: &'a [AtomicU64],
    key: &'a (dyn Fn(FrameId) -> u64 + Sync),
}

impl<'a> PolicyFrames<'a> {
    /// A view over `words` (one per frame, frame ids `1..=words.len()`) and
    /// the pool's `key` function.
    pub fn new(words: &'a [AtomicU64], key: &'a (dyn Fn(FrameId) -> u64 + Sync)) -> Self {
        Self { words, key }
    }

    /// The number of frames (ids `1..=capacity()`).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.words.len()
    }

    /// The policy's word of frame `id`.
    ///
    /// # Panics
    ///
    /// If `id` is beyond [`capacity`](Self::capacity).
    #[inline]
    pub fn word(&self, id: FrameId) -> &AtomicU64 {
        &self.words[id.get() as usize - 1]
    }

    /// The identity of the page frame `id` caches (`map id << 40 | page
    /// index`), for policies that remember evicted pages (ghost or shadow
    /// entries). Meaningful between the page's `add` and its `remove`.
    #[inline]
    pub fn key(&self, id: FrameId) -> u64 {
        (self.key)(id)
    }

    /// Frame `slot + 1`.
    #[inline]
    fn id_at(&self, slot: usize) -> FrameId {
        debug_assert!(slot < self.capacity());
        FrameId::new(slot as u32 + 1).expect("slot + 1 is not 0")
    }
}

/// A pool-wide eviction policy.
///
/// The pool calls [`add`](Self::add) once for every page it caches and
/// [`remove`](Self::remove) once when the page leaves; when it has no free
/// frame it asks [`select`](Self::select) for a few victims and evicts
/// those it still can. Implementations allocate nothing after construction
/// and keep their per-page state in the frames' policy words.
pub trait EvictionPolicy: Send + Sync {
    /// The policy's name, as [`by_name`] accepts it.
    fn name(&self) -> &'static str;

    /// A page was inserted in frame `id`: called once, before the page is
    /// published, with its key already set and the frame's word zero.
    fn add(&self, frames: &PolicyFrames<'_>, id: FrameId);

    /// The page in frame `id` left the cache (evicted, truncated, dropped):
    /// called exactly once for every [`add`](Self::add), before the frame is
    /// freed, and never for a frame not added. Leaves the word zero.
    fn remove(&self, frames: &PolicyFrames<'_>, id: FrameId);

    /// Whether hits must call [`accessed`](Self::accessed) (exact LRU).
    /// Such a policy sees hits through `accessed` alone: the pool then need
    /// not set the frame's referenced bit on a hit, and `Check::Referenced`
    /// reports only what `accessed` could not see (page-table accessed
    /// bits). Other policies rely on the referenced bit.
    fn tracks_every_access(&self) -> bool {
        false
    }

    /// A hit on frame `id`; only called when
    /// [`tracks_every_access`](Self::tracks_every_access) is true.
    fn accessed(&self, _frames: &PolicyFrames<'_>, _id: FrameId) {}

    /// Chooses up to `out.len()` distinct victims and writes them to the
    /// front of `out`; returns how many.
    ///
    /// `check` is called on each frame considered and has side effects (it
    /// clears the referenced bits). Victims stay tracked until the pool calls
    /// [`remove`](Self::remove) for them (an eviction can fail: someone took
    /// the page meanwhile), but are rotated so that the next call does not
    /// return them again at once. The scan is bounded (a few times the
    /// frames tracked): when nothing is evictable it returns fewer victims,
    /// possibly 0. Several reclaimers may call it at once.
    fn select(
        &self,
        frames: &PolicyFrames<'_>,
        check: &mut dyn FnMut(FrameId) -> Check,
        out: &mut [FrameId],
    ) -> usize;

    /// Refaults seen: pages added again soon after their eviction (S3-FIFO's
    /// ghost hits); 0 if the policy cannot tell.
    fn refaults(&self) -> u64 {
        0
    }
}

/// The built-in policy called `name` (`"clock"`, `"lru"`, `"s3fifo"`) for a
/// pool of `capacity` frames; `None` for another name.
///
/// # Panics
///
/// As the policy's constructor (a capacity over [`MAX_FRAMES`] for the
/// list-based ones).
pub fn by_name(name: &str, capacity: usize) -> Option<Box<dyn EvictionPolicy>> {
    Some(match name {
        "clock" => Box::new(Clock::new(capacity)),
        "lru" => Box::new(Lru::new(capacity)),
        "s3fifo" => Box::new(S3Fifo::new(capacity)),
        _ => return None,
    })
}

/// The names [`by_name`] knows.
pub const NAMES: [&str; 3] = ["clock", "lru", "s3fifo"];

/// The most frames the list-based policies ([`Lru`], [`S3Fifo`]) track: their
/// links are 30-bit frame ids.
pub const MAX_FRAMES: usize = list::MAX_FRAMES;

/// Whether `id` is among the first `n` entries of `out` (a batch is small:
/// a linear search beats any set).
#[inline]
fn chosen(out: &[FrameId], n: usize, id: FrameId) -> bool {
    out[..n].contains(&id)
}

#[cfg(all(test, feature = "std", not(pagemap_loom)))]
mod tests;

/// No eviction: never chooses a victim, so an allocation from a full pool
/// fails with [`Error::PoolExhausted`](crate::Error::PoolExhausted) and the
/// user frees pages explicitly ([`PageMap::free_unused`](crate::PageMap::free_unused),
/// [`PageMap::remove`](crate::PageMap::remove)): the cache's behaviour
/// before reclaim existed, for a pool whose owner manages its memory by hand.
#[derive(Clone, Copy, Debug, Default)]
pub struct Manual;

impl EvictionPolicy for Manual {
    fn name(&self) -> &'static str {
        "manual"
    }
    fn add(&self, _: &PolicyFrames<'_>, _: FrameId) {}
    fn remove(&self, _: &PolicyFrames<'_>, _: FrameId) {}
    fn select(
        &self,
        _: &PolicyFrames<'_>,
        _: &mut dyn FnMut(FrameId) -> Check,
        _: &mut [FrameId],
    ) -> usize {
        0
    }
}

/// The default policy of a pool of `capacity` frames: S3-FIFO, chosen from
/// the hit-ratio benchmark (`benches/results/hit_ratio.md`): at or above
/// exact LRU on every trace and cache size, 10.9 points above it on the
/// scan trace, where CLOCK and LRU lose the hot set to each scan.
pub fn default_policy(capacity: usize) -> Box<dyn EvictionPolicy> {
    if capacity <= MAX_FRAMES {
        Box::new(S3Fifo::new(capacity))
    } else {
        Box::new(Clock::new(capacity))
    }
}
