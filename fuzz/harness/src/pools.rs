//! Frame pools reused from one input to the next (per thread).
//!
//! A new pool of 256 frames is a megabyte of zeroed memory, and each new
//! page of it faults in (until cb0ac08, `PrivateFrame::into_raw` also
//! leaked the pool's `Arc`, so such a pool was never freed and the fuzzer
//! grew by up to a megabyte per input; see the fuzz README). [`pool`]
//! hands back the pool of the same capacity the last input used once it is
//! reset: every frame free, and handing frames out in the order a new pool
//! does (1, 2, 3, ...), so that which frame an op gets, and with it every
//! result, does not depend on the inputs run before.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use pagemap::FramePool;

thread_local! {
    static POOLS: RefCell<BTreeMap<usize, Arc<FramePool>>> = const { RefCell::new(BTreeMap::new()) };
}

/// A pool of `capacity` frames, all free, in a new pool's order: the one
/// this thread used last for that capacity, reset, or a new one.
pub fn pool(capacity: usize) -> Arc<FramePool> {
    let cached = POOLS.with(|p| p.borrow().get(&capacity).cloned());
    if let Some(pool) = cached.filter(reset) {
        return pool;
    }
    // These models check the page map's protocols with the pool's size as a
    // hard limit (a full pool refuses loads): reclaim has its own target.
    let pool = Arc::new(
        FramePool::with_policy(capacity, Box::new(pagemap::policy::Manual))
            .expect("valid capacity"),
    );
    // A full pool fails at once (no other thread can let a frame go).
    pool.set_held_grace(std::time::Duration::ZERO);
    POOLS.with(|p| p.borrow_mut().insert(capacity, pool.clone()));
    pool
}

/// Puts the free list back in a new pool's order: takes every frame, then
/// frees them from the highest id down (the free list is a stack). False if
/// a frame is still in use (an earlier run panicked half-way).
fn reset(pool: &Arc<FramePool>) -> bool {
    let capacity = pool.capacity();
    if pool.free_frames() != capacity {
        return false;
    }
    let mut frames: Vec<_> = (0..capacity)
        .map(|_| pool.alloc_private().expect("a free frame"))
        .collect();
    frames.sort_by_key(|f| f.id().get());
    assert!(
        frames
            .iter()
            .enumerate()
            .all(|(k, f)| f.id().get() as usize == k + 1),
        "frame ids are not 1..={capacity}"
    );
    while let Some(f) = frames.pop() {
        drop(f);
    }
    true
}
