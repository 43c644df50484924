//! Eviction policies (placeholder until the policy module lands: CLOCK only).

use alloc::boxed::Box;

use crate::frame::FrameId;
use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// What the pool says about a frame a policy considers for eviction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Accessed since the last check (the bit is now clear): a second chance.
    Referenced,
    /// A candidate.
    Unreferenced,
    /// Not evictable now.
    Busy,
}

/// The policy's view of the pool's frames.
pub struct PolicyFrames<'a> {
    words: &'a [AtomicU64],
    key: &'a (dyn Fn(FrameId) -> u64 + Sync),
}

impl<'a> PolicyFrames<'a> {
    /// A view over `words` (one per frame) and the frames' keys.
    pub fn new(words: &'a [AtomicU64], key: &'a (dyn Fn(FrameId) -> u64 + Sync)) -> Self {
        Self { words, key }
    }
    /// Frames.
    pub fn capacity(&self) -> usize {
        self.words.len()
    }
    /// The policy's word of frame `id`.
    pub fn word(&self, id: FrameId) -> &AtomicU64 {
        &self.words[id.get() as usize - 1]
    }
    /// The key of the page in frame `id`.
    pub fn key(&self, id: FrameId) -> u64 {
        (self.key)(id)
    }
}

/// An eviction policy.
pub trait EvictionPolicy: Send + Sync {
    /// Its name.
    fn name(&self) -> &'static str;
    /// A page was inserted.
    fn add(&self, frames: &PolicyFrames<'_>, id: FrameId);
    /// A page left.
    fn remove(&self, frames: &PolicyFrames<'_>, id: FrameId);
    /// Whether hits call `accessed`.
    fn tracks_every_access(&self) -> bool {
        false
    }
    /// A hit.
    fn accessed(&self, _frames: &PolicyFrames<'_>, _id: FrameId) {}
    /// Chooses victims.
    fn select(
        &self,
        frames: &PolicyFrames<'_>,
        check: &mut dyn FnMut(FrameId) -> Check,
        out: &mut [FrameId],
    ) -> usize;
    /// Refaults seen.
    fn refaults(&self) -> u64 {
        0
    }
}

/// CLOCK over the frame array.
pub struct Clock {
    hand: AtomicUsize,
}

impl Clock {
    /// A clock for `capacity` frames.
    pub fn new(_capacity: usize) -> Self {
        Self {
            hand: AtomicUsize::new(0),
        }
    }
}

impl EvictionPolicy for Clock {
    fn name(&self) -> &'static str {
        "clock"
    }
    fn add(&self, _: &PolicyFrames<'_>, _: FrameId) {}
    fn remove(&self, _: &PolicyFrames<'_>, _: FrameId) {}
    fn select(
        &self,
        frames: &PolicyFrames<'_>,
        check: &mut dyn FnMut(FrameId) -> Check,
        out: &mut [FrameId],
    ) -> usize {
        let cap = frames.capacity();
        let mut n = 0;
        for _ in 0..2 * cap {
            if n == out.len() {
                break;
            }
            let at = self.hand.fetch_add(1, Ordering::Relaxed) % cap;
            let id = FrameId::new(at as u32 + 1).unwrap();
            if check(id) == Check::Unreferenced {
                out[n] = id;
                n += 1;
            }
        }
        n
    }
}

/// A policy by name.
pub fn by_name(name: &str, capacity: usize) -> Option<Box<dyn EvictionPolicy>> {
    match name {
        "clock" => Some(Box::new(Clock::new(capacity))),
        _ => None,
    }
}

/// The default policy for a pool of `capacity` frames.
pub fn default_policy(capacity: usize) -> Box<dyn EvictionPolicy> {
    Box::new(Clock::new(capacity))
}

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
