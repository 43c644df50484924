//! The frame allocator's free list: [`RegionFrames`]' lock-free stack
//! against [`MutexFreeList`], the mutex-headed list it replaced, kept here
//! as the baseline so both run in the same process.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use pagemap::{FrameId, FrameSource, RegionFrames};
use parking_lot::Mutex;

/// Frames in each benchmarked list.
pub const FRAMES: usize = 1024;

/// What the benchmark drives: take a frame, give it back.
pub trait FreeList: Sync {
    /// A free frame, or `None` if none is left.
    fn alloc(&self) -> Option<FrameId>;
    /// Returns `id`, which `alloc` gave out and nobody uses.
    fn free(&self, id: FrameId);
}

impl FreeList for RegionFrames {
    fn alloc(&self) -> Option<FrameId> {
        FrameSource::alloc(self)
    }
    fn free(&self, id: FrameId) {
        // SAFETY: the benchmark frees each frame it allocated once, and
        // never touches its memory.
        unsafe { FrameSource::free(self, id) }
    }
}

/// The free list `RegionFrames` had before it became lock-free: the same
/// 4-byte links, but the head behind one mutex (parking_lot's, as the std
/// build's `crate::sync::Mutex` is) on every alloc and free.
pub struct MutexFreeList {
    /// `next[id - 1]`: the free frame after `id` (0: none).
    next: Box<[AtomicU32]>,
    /// First free frame (0: none).
    head: Mutex<u32>,
    nr_free: AtomicUsize,
}

impl MutexFreeList {
    /// `frames` free frames, low ids first.
    pub fn new(frames: usize) -> Self {
        assert!(frames > 0 && frames < u32::MAX as usize);
        let next = (0..frames)
            .map(|i| AtomicU32::new(if i + 1 < frames { i as u32 + 2 } else { 0 }))
            .collect();
        Self {
            next,
            head: Mutex::new(1),
            nr_free: AtomicUsize::new(frames),
        }
    }

    /// Frames free now.
    pub fn free_frames(&self) -> usize {
        self.nr_free.load(Ordering::Relaxed)
    }

    fn link(&self, id: FrameId) -> &AtomicU32 {
        &self.next[id.get() as usize - 1]
    }
}

impl FreeList for MutexFreeList {
    fn alloc(&self) -> Option<FrameId> {
        let mut head = self.head.lock();
        let id = FrameId::new(*head)?;
        // Relaxed: the links are read and written under `head`'s lock.
        *head = self.link(id).load(Ordering::Relaxed);
        self.nr_free.fetch_sub(1, Ordering::Relaxed);
        Some(id)
    }

    fn free(&self, id: FrameId) {
        let mut head = self.head.lock();
        // Relaxed: under `head`'s lock, as in `alloc`.
        self.link(id).store(*head, Ordering::Relaxed);
        *head = id.get();
        self.nr_free.fetch_add(1, Ordering::Relaxed);
    }
}

/// `iters` alloc+free pairs on one thread.
fn pairs(list: &impl FreeList, iters: u64) {
    for _ in 0..iters {
        let id = list.alloc().expect("a free frame");
        list.free(std::hint::black_box(id));
    }
}

/// Runs `iters` alloc+free pairs on each of `threads` threads, released
/// together by a barrier; returns the wall time from the first start to
/// the last finish (per iteration: the time one thread takes per pair).
pub fn run(list: &impl FreeList, threads: usize, iters: u64) -> Duration {
    if threads == 1 {
        let t = Instant::now();
        pairs(list, iters);
        return t.elapsed();
    }
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    pairs(list, iters);
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let start = spans.iter().map(|s| s.0).min().expect("threads");
    let end = spans.iter().map(|s| s.1).max().expect("threads");
    end - start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_hands_out_low_ids_first_and_refills() {
        let list = MutexFreeList::new(3);
        let ids: Vec<u32> = (0..3).map(|_| list.alloc().unwrap().get()).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert!(list.alloc().is_none());
        for id in ids {
            list.free(FrameId::new(id).unwrap());
        }
        assert_eq!(list.free_frames(), 3);
        run(&list, 2, 1000);
        assert_eq!(list.free_frames(), 3);
    }
}
