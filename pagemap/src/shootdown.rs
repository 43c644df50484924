//! Batched TLB shootdowns, in the spirit of Linux's mmu_gather.
//!
//! A remover (munmap, removal, writeback) unmaps pages from many address
//! spaces. It [`add`](ShootdownBatch::add)s each `(address space, virtual
//! page range)` it changed ([`Vpn`]s) and [`defer_free`](ShootdownBatch::defer_free)s the
//! private frames it took away (owned [`PrivateFrame`]s, of any pool); [`flush`](ShootdownBatch::flush) then issues one
//! acknowledged shootdown per distinct address space (no fixed cap: Akaros
//! capped a batch at 10 processes), a whole-space flush for a space whose
//! range grew past the page ceiling (x86 switches above 33 pages), and only
//! after all of them have completed returns the frames to the pool. Dropping
//! a batch flushes it, so a frame is never freed before its shootdown.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use crate::frame::{FrameId, FrameSource, PrivateFrame};

/// A virtual page number: a virtual address divided by [`PAGE_SIZE`](crate::PAGE_SIZE)
/// (`va >> 12`), in the address space a [`FlushTarget`] stands for. The page
/// numbers a [`ShootdownBatch`] and a [`FlushTarget`] take are these, never
/// file page indices: a mapper converts (`vmr`: `Vmr::va_of(index) / PAGE`).
pub type Vpn = u64;

/// An address space, as a shootdown batch sees it. `vmr` implements it; a
/// kernel implements it over its real TLB-shootdown IPIs.
pub trait FlushTarget: Send + Sync {
    /// Identity: two targets with the same id are the same address space.
    fn id(&self) -> u64;

    /// Drops every CPU's translations of virtual pages `first..=last` of
    /// this space (`vpns`, inclusive; all of them for `None`) and returns
    /// once every CPU has done so.
    fn flush(&self, vpns: Option<(Vpn, Vpn)>);
}

/// Up to this many spaces a batch finds one by scanning, beyond through an
/// ordered index (a BTreeMap: in `alloc`, so no_std needs no hasher, no
/// random seed and no extra crate, and at this size O(log n) is as cheap).
const LINEAR: usize = 8;

/// Above this many pages in one space, a batch flushes the whole space.
pub const DEFAULT_CEILING: u64 = 33;

struct Pending {
    target: Arc<dyn FlushTarget>,
    first: u64,
    last: u64,
    /// Pages added (may exceed the hull's size when ranges overlap).
    pages: u64,
}

/// A frame waiting for a batch's shootdowns before it is freed.
enum Deferred {
    /// A pool's frame: dropping the handle frees it.
    Private(PrivateFrame),
    /// A frame of the caller's own source.
    Source(Arc<dyn FrameSource>, FrameId),
}

/// What a [`ShootdownBatch::flush`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Shootdowns issued: one per distinct address space.
    pub shootdowns: u64,
    /// Of those, whole-space flushes (range above the ceiling).
    pub full_flushes: u64,
    /// Pages added to the batch.
    pub pages: u64,
    /// Frames returned to the pool after the shootdowns.
    pub frames_freed: u64,
}

/// Collects shootdowns and frames to free; see the module docs.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use pagemap::{FlushTarget, FramePool, ShootdownBatch};
///
/// struct Space(u64, Mutex<Vec<Option<(u64, u64)>>>);
/// impl FlushTarget for Space {
///     fn id(&self) -> u64 { self.0 }
///     fn flush(&self, vpns: Option<(u64, u64)>) { self.1.lock().unwrap().push(vpns) }
/// }
///
/// let pool = Arc::new(FramePool::new(4).unwrap());
/// let a = Arc::new(Space(1, Mutex::default()));
/// let frame = pool.alloc_private().unwrap(); // say, a private copy just unmapped
/// let mut batch = ShootdownBatch::new();
/// batch.add(a.clone(), 10, 11);
/// batch.add(a.clone(), 14, 14); // same space: merged
/// batch.defer_free(frame);
/// assert_eq!(pool.free_frames(), 3, "not before the shootdown");
/// let report = batch.flush();
/// assert_eq!((report.shootdowns, report.frames_freed), (1, 1));
/// assert_eq!(*a.1.lock().unwrap(), vec![Some((10, 14))]);
/// assert_eq!(pool.free_frames(), 4);
/// ```
pub struct ShootdownBatch {
    ceiling: u64,
    /// The unbatched baseline: every page of every `add` flushed at once.
    per_page: bool,
    /// Per-page shootdowns issued since the last `flush` report.
    unreported: u64,
    pending: Vec<Pending>,
    /// Target id -> position in `pending`.
    index: BTreeMap<u64, usize>,
    /// Freed after the shootdowns.
    frames: Vec<Deferred>,
    total: BatchReport,
}

impl ShootdownBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::with_ceiling(DEFAULT_CEILING)
    }

    /// An empty batch that flushes a whole space above `ceiling` pages.
    pub fn with_ceiling(ceiling: u64) -> Self {
        Self {
            ceiling,
            per_page: false,
            unreported: 0,
            pending: Vec::new(),
            index: BTreeMap::new(),
            frames: Vec::new(),
            total: BatchReport::default(),
        }
    }

    /// The naive strategy, as a baseline for benchmarks and tests: no
    /// batching at all. Every [`add`](Self::add) flushes each of its pages
    /// at once, one shootdown per page per mapping (frames are still freed
    /// only at [`flush`](Self::flush)).
    pub fn unbatched() -> Self {
        let mut batch = Self::new();
        batch.per_page = true;
        batch
    }

    /// Records that virtual pages `first..=last` of `target` changed (their
    /// entries lost a right: a translation a CPU caches must go).
    pub fn add(&mut self, target: Arc<dyn FlushTarget>, first: Vpn, last: Vpn) {
        assert!(first <= last, "empty page range {first}..={last}");
        if self.per_page {
            for page in first..=last {
                target.flush(Some((page, page)));
                self.unreported += 1;
                self.total.pages += 1;
            }
            return;
        }
        let pages = (last - first).saturating_add(1);
        let id = target.id();
        // A handful of spaces is the common case: a linear scan, no lookup
        // and no allocation; the index takes over past that (no cap).
        let found = if self.pending.len() <= LINEAR {
            self.pending.iter().position(|p| p.target.id() == id)
        } else {
            if self.index.is_empty() {
                for (i, p) in self.pending.iter().enumerate() {
                    self.index.insert(p.target.id(), i);
                }
            }
            self.index.get(&id).copied()
        };
        match found {
            Some(i) => {
                let p = &mut self.pending[i];
                p.first = p.first.min(first);
                p.last = p.last.max(last);
                p.pages = p.pages.saturating_add(pages);
            }
            None => {
                if !self.index.is_empty() {
                    self.index.insert(id, self.pending.len());
                }
                self.pending.push(Pending {
                    target,
                    first,
                    last,
                    pages,
                });
            }
        }
    }

    /// Frees `frame` (into its own pool) once the pending shootdowns have
    /// completed: no CPU can reach it through a stale translation then.
    pub fn defer_free(&mut self, frame: PrivateFrame) {
        self.frames.push(Deferred::Private(frame));
    }

    /// Frees frame `id` straight to `source` once the pending shootdowns
    /// have completed: for a kernel's own frames (an anonymous page from its
    /// allocator, a page-table page) that never were a pool's. A frame a
    /// [`FramePool`](crate::FramePool) allocated goes back through its
    /// [`PrivateFrame`] instead ([`defer_free`](Self::defer_free)), so that
    /// the pool's metadata follows.
    ///
    /// # Safety
    /// As [`FrameSource::free`]: `id` came from `source`'s `alloc`, is not
    /// freed otherwise, is no pool's frame, and after this batch's
    /// shootdowns nothing uses it.
    pub unsafe fn defer_free_to(&mut self, source: Arc<dyn FrameSource>, id: FrameId) {
        self.frames.push(Deferred::Source(source, id));
    }

    /// Address spaces waiting for a shootdown.
    pub fn targets(&self) -> usize {
        self.pending.len()
    }

    /// Issues the shootdowns (one per address space), waits for them, then
    /// frees the deferred frames. The batch is empty and reusable after.
    pub fn flush(&mut self) -> BatchReport {
        let mut r = BatchReport::default();
        if self.per_page {
            // The shootdowns happened in `add`; report them here once.
            r.shootdowns = core::mem::take(&mut self.unreported);
        }
        for p in self.pending.drain(..) {
            let hull = (p.last - p.first).saturating_add(1);
            let full = p.pages > self.ceiling || hull > self.ceiling;
            p.target
                .flush(if full { None } else { Some((p.first, p.last)) });
            r.shootdowns += 1;
            r.full_flushes += u64::from(full);
            r.pages += p.pages;
        }
        self.index.clear();
        // Only now can no CPU reach these frames.
        r.frames_freed = self.frames.len() as u64;
        for frame in self.frames.drain(..) {
            match frame {
                Deferred::Private(f) => drop(f), // the handle frees its frame
                // SAFETY: `defer_free_to`'s caller promised the frame is
                // the source's and unused once the shootdowns above are done.
                Deferred::Source(source, id) => unsafe { source.free(id) },
            }
        }
        self.total.shootdowns += r.shootdowns;
        self.total.full_flushes += r.full_flushes;
        self.total.pages += r.pages;
        self.total.frames_freed += r.frames_freed;
        r
    }

    /// Everything this batch has flushed so far.
    pub fn totals(&self) -> BatchReport {
        self.total
    }
}

impl Default for ShootdownBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ShootdownBatch {
    fn drop(&mut self) {
        self.flush();
    }
}

impl fmt::Debug for ShootdownBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShootdownBatch")
            .field("targets", &self.pending.len())
            .field("frames", &self.frames.len())
            .field("ceiling", &self.ceiling)
            .field("total", &self.total)
            .finish()
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;
    use crate::frame::FramePool;
    use std::sync::Mutex;

    /// A flush: its page range, and the pool's free frames at that moment.
    type Flushed = (Option<(u64, u64)>, usize);

    struct Space {
        id: u64,
        pool: Arc<FramePool>,
        log: Mutex<Vec<Flushed>>,
    }
    impl FlushTarget for Space {
        fn id(&self) -> u64 {
            self.id
        }
        fn flush(&self, pages: Option<(u64, u64)>) {
            // Record how many frames were free at flush time.
            self.log
                .lock()
                .unwrap()
                .push((pages, self.pool.free_frames()));
        }
    }

    #[test]
    fn one_shootdown_per_space_no_cap_frames_after() {
        let pool = Arc::new(FramePool::new(64).unwrap());
        let spaces: Vec<Arc<Space>> = (0..20)
            .map(|id| {
                Arc::new(Space {
                    id,
                    pool: pool.clone(),
                    log: Mutex::default(),
                })
            })
            .collect();
        let frames: Vec<_> = (0..10).map(|_| pool.alloc_private().unwrap()).collect();
        let mut b = ShootdownBatch::new();
        // 20 spaces (Akaros's cap was 10), three ranges each.
        for s in &spaces {
            for k in 0..3 {
                b.add(s.clone(), 100 + k, 100 + k);
            }
        }
        for f in frames {
            b.defer_free(f);
        }
        assert_eq!(b.targets(), 20);
        let r = b.flush();
        assert_eq!(
            (r.shootdowns, r.full_flushes, r.pages, r.frames_freed),
            (20, 0, 60, 10)
        );
        for s in &spaces {
            let log = s.log.lock().unwrap();
            assert_eq!(log.len(), 1, "one shootdown per space");
            assert_eq!(
                log[0],
                (Some((100, 102)), 54),
                "frames still held during the flush"
            );
        }
        assert_eq!(pool.free_frames(), 64);
        assert_eq!(b.flush(), BatchReport::default(), "empty after a flush");
    }

    #[test]
    fn full_flush_above_the_ceiling() {
        let pool = Arc::new(FramePool::new(1).unwrap());
        let s = Arc::new(Space {
            id: 7,
            pool: pool.clone(),
            log: Mutex::default(),
        });
        let mut b = ShootdownBatch::with_ceiling(4);
        b.add(s.clone(), 0, 3);
        assert_eq!(b.flush().full_flushes, 0);
        b.add(s.clone(), 0, 2);
        b.add(s.clone(), 10, 10); // hull 0..=10 is past the ceiling
        assert_eq!(b.flush().full_flushes, 1);
        assert_eq!(s.log.lock().unwrap().last().unwrap().0, None);
        assert_eq!(b.totals().shootdowns, 2);
    }

    #[test]
    fn drop_flushes() {
        let pool = Arc::new(FramePool::new(2).unwrap());
        let s = Arc::new(Space {
            id: 1,
            pool: pool.clone(),
            log: Mutex::default(),
        });
        {
            let mut b = ShootdownBatch::new();
            b.add(s.clone(), 5, 5);
            b.defer_free(pool.alloc_private().unwrap());
        }
        assert_eq!(s.log.lock().unwrap().len(), 1);
        assert_eq!(pool.free_frames(), 2);
    }

    #[test]
    fn a_kernels_own_frame_is_freed_to_its_source_after_the_flush() {
        use crate::frame::{FrameSource, RegionFrames};
        let source: Arc<dyn FrameSource> = Arc::new(RegionFrames::heap(2).unwrap());
        let pool = Arc::new(FramePool::new(1).unwrap());
        let s = Arc::new(Space {
            id: 3,
            pool: pool.clone(),
            log: Mutex::default(),
        });
        let id = source.alloc().unwrap(); // the kernel's own page
        let mut b = ShootdownBatch::new();
        b.add(s.clone(), 0, 0);
        // SAFETY: allocated from `source` above, unused, freed only here.
        unsafe { b.defer_free_to(source.clone(), id) };
        assert_eq!(source.free_frames(), 1, "not before the shootdown");
        assert_eq!(b.flush().frames_freed, 1);
        assert_eq!(source.free_frames(), 2);
        assert_eq!(s.log.lock().unwrap().len(), 1);
    }
}
