//! The frame allocator's lock-free free list (`RegionFrames`, a Treiber
//! stack with an ABA tag in its head word), driven directly through the
//! `FrameSource` trait.
//!
//! Each frame id has a loom `UnsafeCell<bool>` "held" flag, written by the
//! thread that allocates the frame and by the one that frees it: a frame
//! handed out twice, or a hand-off that the free list does not order (a
//! free not happening-before the next alloc of that frame), fails the
//! execution (the assertion, or loom's "Causality violation"). The pool's
//! own ownership tokens rely on the same order; the last model checks them.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom_tests::model;
use pagemap::{FrameId, FramePool, FrameSource, RegionFrames};

/// A free list and a "held" flag per frame.
struct Frames {
    src: RegionFrames,
    held: Vec<UnsafeCell<bool>>,
}

// SAFETY: a frame's `held` cell is touched only by the thread the free list
// handed the frame to (or that frees it): what the model checks.
unsafe impl Sync for Frames {}

impl Frames {
    fn new(frames: usize) -> Arc<Self> {
        Arc::new(Self {
            src: RegionFrames::heap(frames).unwrap(),
            held: (0..frames).map(|_| UnsafeCell::new(false)).collect(),
        })
    }

    fn alloc(&self) -> Option<FrameId> {
        let id = self.src.alloc()?;
        // SAFETY: the frame is ours alone (loom checks it).
        self.held[id.get() as usize - 1].with_mut(|h| unsafe {
            assert!(!*h, "frame {id:?} handed out twice");
            *h = true;
        });
        Some(id)
    }

    fn free(&self, id: FrameId) {
        // SAFETY: as in `alloc`.
        self.held[id.get() as usize - 1].with_mut(|h| unsafe {
            assert!(*h, "frame {id:?} freed but not held");
            *h = false;
        });
        // SAFETY: allocated by `alloc` above, freed once, used by nothing.
        unsafe { self.src.free(id) };
    }

    /// Allocates every frame left (checking each as `alloc` does) and
    /// returns how many there were.
    fn drain(&self) -> usize {
        let mut n = 0;
        while self.alloc().is_some() {
            n += 1;
        }
        n
    }
}

/// Two threads each allocate and free a frame while a third allocates one
/// and keeps it, over 3 frames: enough for the ABA case (a popper stalls
/// after reading frame 1's link to 2; frame 1 is popped, frame 2 popped and
/// kept, frame 1 pushed back; without the tag the stalled CAS would put the
/// kept frame 2 back on top). No frame is handed out twice, and at the end
/// the list holds exactly the two frames not kept.
#[test]
fn alloc_free_pairs_race_an_alloc() {
    model(|| {
        let f = Frames::new(3);
        let pairs: Vec<_> = (0..2)
            .map(|_| {
                let f = f.clone();
                loom::thread::spawn(move || {
                    // 3 frames, at most 3 holders: never exhausted.
                    let id = f.alloc().expect("a free frame");
                    f.free(id);
                })
            })
            .collect();
        let kept = f.alloc().expect("a free frame");
        for t in pairs {
            t.join().unwrap();
        }
        assert_eq!(f.src.free_frames(), 2);
        assert_eq!(f.drain(), 2, "the list lost or duplicated a frame");
        assert_eq!(f.src.free_frames(), 0);
        f.free(kept);
    });
}

/// Two threads race for the last free frame: exactly one gets it, and it
/// comes back once freed.
#[test]
fn alloc_vs_alloc_for_the_last_frame() {
    model(|| {
        let f = Frames::new(2);
        let first = f.alloc().unwrap();
        let other = {
            let f = f.clone();
            loom::thread::spawn(move || f.alloc())
        };
        let mine = f.alloc();
        let theirs = other.join().unwrap();
        let won = match (mine, theirs) {
            (Some(id), None) | (None, Some(id)) => id,
            _ => panic!("not exactly one winner: {mine:?} {theirs:?}"),
        };
        assert_ne!(won, first);
        assert_eq!(f.src.free_frames(), 0);
        f.free(won);
        assert_eq!(f.src.free_frames(), 1);
        assert_eq!(f.alloc(), Some(won));
    });
}

/// The pool over the free list: a private frame freed by one thread and
/// allocated by another. The pool writes the frame's ownership token on
/// both (loom fails the execution unless the free happens-before the
/// alloc), and its FREE flag catches a frame the source gives out twice.
#[test]
fn a_pool_frame_freed_by_one_thread_is_ordered_before_its_next_owner() {
    model(|| {
        let pool = std::sync::Arc::new(FramePool::new(1).unwrap());
        let t = {
            let pool = pool.clone();
            loom::thread::spawn(move || drop(pool.alloc_private()))
        };
        let mine = pool.alloc_private();
        drop(mine);
        t.join().unwrap();
        assert_eq!(pool.free_frames(), 1);
    });
}
