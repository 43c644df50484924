//! Page frames: a pool of 4 KiB frames whose memory and allocation come
//! from a [`FrameSource`] (the kernel's allocator, a memory region).
//!
//! A frame has a non-zero [`FrameId`], an atomic flags word, its owner
//! (page map id and page index) while it belongs to a page map, and 4 KiB of
//! contents at an address the source gives (a pointer, and a physical
//! address for page tables and DMA). The library reads and writes contents
//! as `AtomicU64` words with relaxed atomics, so concurrent readers and
//! writers never form a Rust data race (they can tear at word granularity,
//! exactly like real memory; the page lock and the removal protocol decide
//! who may rely on what). The store's I/O reaches the memory directly (see
//! `contents`: the argument for each case is at its site).
//!
//! The pool spends 24 bytes of metadata per frame (flags, owner, index, and
//! a private frame's swap state); the source its own
//! ([`RegionFrames`]: 4 bytes of free-list link).
//!
//! Ownership: a frame is free (FREE set, on the list), or owned by a page map
//! (published in a slot word), or owned by a [`PrivateFrame`] handle (or by
//! the page table entry that handle was turned into). Allocation and freeing
//! of raw ids are crate-private, so no safe call outside the crate can free a
//! frame that a slot or an entry still names; a double free is an assertion.
//!
//! One file per concept: this one holds [`FrameId`], the flags and the pool
//! itself (allocation through the source, owner and flags metadata, the
//! loom ownership tokens); `source` the [`FrameSource`] trait and
//! [`RegionFrames`]; `lock` the bit locks (LOCKED, WRITEBACK) and their wait
//! buckets; `contents` the page bytes (reads, writes, the MMU's write, the
//! store's direct access); `private` the owning [`PrivateFrame`] handle. The
//! frame layer is the bottom of `pagemap`: it uses only `error` and `sync`.

use core::fmt;
use core::num::NonZeroU32;
use core::ptr::NonNull;

use alloc::boxed::Box;

use crate::error::{Error, StoreError};
use crate::sync::{data, AtomicU32, AtomicU64, Ordering};
#[cfg(any(feature = "std", pagemap_loom))]
use crate::sync::{Condvar, Mutex};
use crate::PAGE_SIZE;

mod contents;
mod lock;
pub mod policy;
mod private;
mod reclaim;
mod source;
mod stats;

pub use contents::PageSrc;
pub use policy::{Check, EvictionPolicy, PolicyFrames};
pub use private::PrivateFrame;
pub(crate) use reclaim::{mine, Evictor};
pub use reclaim::{ReclaimReport, RECLAIMERS, RECLAIM_BATCH};
pub use source::{FrameSource, RegionFrames};
#[cfg(all(feature = "std", not(pagemap_loom)))]
pub(crate) use stats::Latency as LatencyHist;
pub(crate) use stats::{map_ctr, Sharded};
pub use stats::{MapStats, PoolStats};

/// Words of page contents.
const PAGE_WORDS: usize = PAGE_SIZE / 8;

/// The identity of a frame: its position in its [`FrameSource`] plus one (0
/// means "no page", which is what makes an all-zero slot word empty).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameId(NonZeroU32);

impl FrameId {
    /// Wraps a raw id; `None` for 0.
    #[inline]
    pub fn new(raw: u32) -> Option<Self> {
        NonZeroU32::new(raw).map(Self)
    }

    /// The raw id (never 0).
    #[inline]
    pub fn get(self) -> u32 {
        self.0.get()
    }

    pub(crate) fn slot(self) -> usize {
        self.0.get() as usize - 1
    }
}

impl fmt::Debug for FrameId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "f{}", self.0)
    }
}

/// Frame flag bits (one atomic word per frame).
pub mod flags {
    /// I/O in flight or contents being changed; others wait.
    pub const LOCKED: u32 = 1 << 0;
    /// Contents are valid.
    pub const UPTODATE: u32 = 1 << 1;
    /// Contents differ from the backing store.
    pub const DIRTY: u32 = 1 << 2;
    /// The frame belongs to a page map.
    pub const PAGEMAP: u32 = 1 << 3;
    /// A write-back of this page is in progress.
    pub const WRITEBACK: u32 = 1 << 4;
    /// The last read failed (its errno is in the high byte).
    pub const ERROR: u32 = 1 << 5;
    /// Demand paging: a private frame is being paged in or out (a lock bit
    /// whose holder moves the page: see [`Swap`](crate::swap::Swap);
    /// faults that find it sleep on it).
    pub const BUSY: u32 = 1 << 6;
    /// Demand paging: a clean copy exists in the backing store (reserved: a
    /// private frame keeps this in its state word, with its location).
    pub const BACKED: u32 = 1 << 7;
    /// Demand paging: never evict (reserved: nothing sets it yet).
    pub const PINNED: u32 = 1 << 8;
    /// The page is known to the eviction policy (added at its insert, and
    /// removed from the policy when the frame is freed; Linux's `PG_lru`).
    pub const LRU: u32 = 1 << 9;
    /// Not allocated from the pool (a second free of the frame is caught by this).
    pub const FREE: u32 = 1 << 10;
    /// A completion-based store request (a read or a write-back) on this
    /// frame is submitted and not yet completed; its submitter sleeps on it.
    pub const INFLIGHT: u32 = 1 << 11;
    /// The completed write-back request failed (its errno is in the high
    /// byte); its submitter takes both.
    pub(crate) const WRITE_ERROR: u32 = 1 << 12;
    /// A truncate cut the page from its page map while someone held it:
    /// it is in no slot any more, writes through its references are
    /// refused, writeback and removers pass it by, and the frame's index
    /// word counts its remaining holders (see `FramePool::orphan_put`).
    pub const DETACHED: u32 = 1 << 13;
    /// Someone sleeps on LOCKED (internal: lets unlock skip the wake-up).
    pub(crate) const WAITERS: u32 = 1 << 15;
    /// Shift of the 8-bit errno of a failed read.
    pub(crate) const ERRNO_SHIFT: u32 = 24;
    /// Mask of the errno of a failed read.
    pub(crate) const ERRNO_MASK: u32 = 0xff << ERRNO_SHIFT;
}

/// One frame's metadata: 24 bytes.
#[derive(Debug)]
pub(crate) struct Frame {
    flags: AtomicU32,
    /// Id of the owning page map, or of a private frame's
    /// [`AnonOwner`](crate::swap::AnonOwner) (0 when free or none).
    owner: AtomicU32,
    /// Page index while owned by a page map; a private frame's rmap key
    /// (its owner's: vmr's virtual page number); once the frame is
    /// DETACHED, the count of its holders (the "orphan" count that the slot word kept before: a
    /// detached frame has no index, so the word is free).
    index: AtomicU64,
    /// A private frame's map references and swap state (see
    /// `swap::state`: references, CACHED, BACKED, its swap location).
    pub(crate) state: AtomicU64,
}

/// Loom builds only: a frame's ownership token (see
/// [`FramePool::track_access`]).
#[cfg(pagemap_loom)]
#[derive(Debug)]
struct OwnerToken(loom::cell::UnsafeCell<()>);

// SAFETY: the cell holds no data (`()`); it exists only so that loom tracks
// who accesses it, and loom's tracking is itself safe to use from any thread.
#[cfg(pagemap_loom)]
unsafe impl Sync for OwnerToken {}
// SAFETY: as for Sync (no data to send).
#[cfg(pagemap_loom)]
unsafe impl Send for OwnerToken {}

#[cfg(all(feature = "std", not(pagemap_loom)))]
const WAIT_BUCKETS: usize = 64;
#[cfg(pagemap_loom)]
const WAIT_BUCKETS: usize = 1;

/// A pool of 4 KiB page frames: their metadata and locks, over a
/// [`FrameSource`] that owns their memory and says which are free.
///
/// [`FramePool::new`] makes an in-memory pool (a heap region); a kernel
/// passes its own source to [`FramePool::with_source`], and gets every
/// frame's address with [`frame_ptr`](Self::frame_ptr) and
/// [`phys_addr`](Self::phys_addr) (what goes into a page table entry).
///
/// Page maps take their frames from it; other users (a copy-on-write copy, an
/// anonymous page) take owning [`PrivateFrame`] handles, which free the frame
/// when dropped:
///
/// ```
/// use std::sync::Arc;
/// use pagemap::FramePool;
/// let pool = Arc::new(FramePool::new(2).unwrap());
/// let a = pool.alloc_private().unwrap();
/// let b = pool.alloc_private().unwrap();
/// assert!(pool.alloc_private().is_err()); // exhausted: an error, not a panic
/// drop((a, b));
/// assert_eq!(pool.free_frames(), 2);
/// ```
///
/// No safe call can free a frame that a page still uses (two pages would
/// then share it): freeing raw frame ids is crate-private.
///
/// ```compile_fail
/// use std::sync::Arc;
/// use pagemap::{FramePool, MemStore, PageMap};
/// let pool = Arc::new(FramePool::new(2).unwrap());
/// let map = PageMap::new(pool.clone(), Arc::new(MemStore::new()));
/// let page = map.load(1).unwrap();
/// pool.free(page.frame()); // private: does not compile
/// let other = map.load(2).unwrap();
/// assert_ne!(page.frame(), other.frame());
/// ```
///
/// The same program without the free compiles and runs (so the example
/// above fails for the free alone: `compile_fail` cannot name the error
/// on stable Rust), and the two pages have two frames:
///
/// ```
/// use std::sync::Arc;
/// use pagemap::{FramePool, MemStore, PageMap};
/// let pool = Arc::new(FramePool::new(2).unwrap());
/// let map = PageMap::new(pool.clone(), Arc::new(MemStore::new()));
/// let page = map.load(1).unwrap();
/// let other = map.load(2).unwrap();
/// assert_ne!(page.frame(), other.frame());
/// ```
pub struct FramePool {
    frames: Box<[Frame]>,
    source: Box<dyn FrameSource>,
    /// The eviction policy, pool-wide, and its 8 bytes of state per frame.
    policy: Box<dyn EvictionPolicy>,
    policy_words: Box<[AtomicU64]>,
    /// Whether hits must call the policy (exact LRU): read on every hit, so
    /// kept here rather than asked of the policy through its vtable.
    policy_on_hit: bool,
    /// The page maps drawing on the pool and reclaim's scratch buffers.
    reclaim: reclaim::Reclaim,
    /// Frames freed since the pool was made: direct reclaim's measure of
    /// progress (its own and everyone else's).
    frees: AtomicU64,
    /// See [`set_held_grace`](Self::set_held_grace), in microseconds.
    held_grace_us: AtomicU32,
    pub(crate) stats: stats::PoolCounters,
    /// The background reclaimer's wake-up, if one runs: (low watermark, the
    /// waker). Allocations below the low watermark wake it.
    #[cfg(all(feature = "std", not(pagemap_loom)))]
    pub(crate) kswapd: crate::reclaimer::Wake,
    /// The source's `linear_base`, kept so that a content access computes
    /// its address instead of calling the source.
    base: Option<NonNull<u8>>,
    /// Hashed wait queues for LOCKED, as Linux's page wait table.
    #[cfg(any(feature = "std", pagemap_loom))]
    waitq: Box<[(Mutex<()>, Condvar)]>,
    /// Loom builds only: one ownership token per frame, which makes the
    /// frame's lifetime visible to loom (contents are std atomics, invisible
    /// to it). Allocation and free write the token, every content access
    /// reads it, so loom reports any content access that does not
    /// happen-after the frame's allocation or that races its free (see
    /// [`track_access`](Self::track_access)).
    #[cfg(pagemap_loom)]
    tokens: Box<[OwnerToken]>,
    /// Loom builds only: whether content accesses are tracked (models that
    /// disable shootdowns to show a stale access turn it off).
    #[cfg(pagemap_loom)]
    tracking: std::sync::atomic::AtomicBool,
}

// SAFETY: the only field that is not Send + Sync is `base`, a copy of the
// source's own pointer, used only to compute the addresses of frames the
// source (which is Send + Sync) lets the pool share.
unsafe impl Send for FramePool {}
// SAFETY: as for Send.
unsafe impl Sync for FramePool {}

impl fmt::Debug for FramePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramePool")
            .field("capacity", &self.capacity())
            .field("free", &self.free_frames())
            .finish()
    }
}

impl FramePool {
    /// The largest pool: frame ids are `u32`s, all ones excluded (the slot
    /// word's frame field is exactly a `u32`, which `slot` asserts, so this
    /// layer does not depend on the one above it).
    pub const MAX_CAPACITY: usize = u32::MAX as usize - 1;

    /// A pool of `capacity` zeroed frames in a heap region it owns
    /// ([`RegionFrames::heap`]). Memory for contents is reserved zeroed, so
    /// untouched frames cost no resident memory on most systems.
    ///
    /// # Errors
    /// [`Error::InvalidCapacity`] for 0 frames, more than
    /// [`MAX_CAPACITY`](Self::MAX_CAPACITY), or a failed allocation.
    pub fn new(capacity: usize) -> Result<Self, Error> {
        Self::with_source(RegionFrames::heap(capacity)?)
    }

    /// A pool as [`new`](Self::new), choosing victims with `policy` (see
    /// [`policy`]; [`policy::by_name`] builds the built-in ones).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_policy(capacity: usize, policy: Box<dyn EvictionPolicy>) -> Result<Self, Error> {
        Self::with_source_and_policy(RegionFrames::heap(capacity)?, policy)
    }

    /// A pool over `source`'s frames (see [`FrameSource`]): a kernel's
    /// allocator, or [`RegionFrames`] over memory the caller owns.
    ///
    /// # Errors
    /// [`Error::InvalidCapacity`] if the source has no frames or more than
    /// [`MAX_CAPACITY`](Self::MAX_CAPACITY).
    ///
    /// # Panics
    /// If the source's linear base is not 8-byte aligned.
    pub fn with_source(source: impl FrameSource + 'static) -> Result<Self, Error> {
        let policy = policy::default_policy(source.capacity());
        Self::with_source_and_policy(source, policy)
    }

    /// A pool over `source`'s frames choosing victims with `policy`.
    ///
    /// # Errors
    /// As [`with_source`](Self::with_source).
    ///
    /// # Panics
    /// As [`with_source`](Self::with_source).
    pub fn with_source_and_policy(
        source: impl FrameSource + 'static,
        policy: Box<dyn EvictionPolicy>,
    ) -> Result<Self, Error> {
        let capacity = source.capacity();
        if capacity == 0 || capacity > Self::MAX_CAPACITY {
            return Err(Error::InvalidCapacity {
                requested: capacity,
                max: Self::MAX_CAPACITY,
            });
        }
        let base = source.linear_base();
        if let Some(b) = base {
            assert!(
                (b.as_ptr() as usize).is_multiple_of(8),
                "frame memory must be 8-byte aligned"
            );
        }
        let frames: Box<[Frame]> = (0..capacity)
            .map(|_| Frame {
                flags: AtomicU32::new(flags::FREE),
                owner: AtomicU32::new(0),
                index: AtomicU64::new(0),
                state: AtomicU64::new(0),
            })
            .collect();
        #[cfg(any(feature = "std", pagemap_loom))]
        let waitq = (0..WAIT_BUCKETS)
            .map(|_| (Mutex::new(()), Condvar::new()))
            .collect();
        Ok(Self {
            frames,
            source: Box::new(source),
            policy_on_hit: policy.tracks_every_access(),
            policy,
            policy_words: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            reclaim: reclaim::Reclaim::new(),
            frees: AtomicU64::new(0),
            held_grace_us: AtomicU32::new(Self::DEFAULT_HELD_GRACE.as_micros() as u32),
            stats: stats::PoolCounters::new(),
            #[cfg(all(feature = "std", not(pagemap_loom)))]
            kswapd: crate::reclaimer::Wake::new(),
            base,
            #[cfg(any(feature = "std", pagemap_loom))]
            waitq,
            #[cfg(pagemap_loom)]
            tokens: (0..capacity)
                .map(|_| OwnerToken(loom::cell::UnsafeCell::new(())))
                .collect(),
            #[cfg(pagemap_loom)]
            tracking: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// Frames in the pool.
    pub fn capacity(&self) -> usize {
        self.frames.len()
    }

    /// Frames currently free (a snapshot: the source's count).
    pub fn free_frames(&self) -> usize {
        self.source.free_frames()
    }

    /// Bytes of metadata spent per frame, contents excluded: the pool's 24
    /// (flags, owner, index, private state) plus the source's own.
    pub fn metadata_bytes_per_frame(&self) -> usize {
        core::mem::size_of::<Frame>() + self.source.metadata_bytes_per_frame()
    }

    /// The frame source.
    pub fn source(&self) -> &dyn FrameSource {
        &*self.source
    }

    /// The address of frame `id`'s memory as the CPU reaches it (a kernel:
    /// in its direct map). Reading or writing through it is the caller's
    /// business (`unsafe`); the pool's own accesses are atomic words.
    ///
    /// # Panics
    /// If `id` is not one of the pool's frames.
    #[inline]
    pub fn frame_ptr(&self, id: FrameId) -> NonNull<u8> {
        let i = id.slot();
        assert!(i < self.frames.len(), "frame {id:?} is not in this pool");
        match self.base {
            // SAFETY: i < capacity, so the offset stays inside the source's
            // linear region (its contract: `base + (id - 1) * PAGE_SIZE`).
            Some(base) => unsafe { base.add(i * PAGE_SIZE) },
            None => self.source.frame_ptr(id),
        }
    }

    /// The physical address of frame `id` (what a page table entry or a
    /// DMA descriptor takes), from the source.
    ///
    /// # Panics
    /// If `id` is not one of the pool's frames.
    pub fn phys_addr(&self, id: FrameId) -> u64 {
        assert!(
            id.slot() < self.frames.len(),
            "frame {id:?} is not in this pool"
        );
        self.source.phys_addr(id)
    }

    /// Takes a free frame; its flags are 0 and its contents whatever the
    /// last owner left (callers fill it before publishing it). If none is
    /// free, reclaims (direct reclaim: [`reclaim`](Self::reclaim) in the
    /// calling thread) until one is, or until reclaim finds nothing to
    /// evict: then [`Error::PoolExhausted`], and nothing was changed.
    ///
    /// The caller must not hold a lock that an eviction takes (a page
    /// map's writer lock, its reverse-map lock, a page lock of a cached
    /// page): map inserts allocate before taking the writer lock.
    pub(crate) fn alloc(&self) -> Result<FrameId, Error> {
        self.alloc_with(true)
    }

    /// [`alloc`](Self::alloc); `wait`: reclaim may wait for a page map's
    /// remover lock (a load's miss: the caller holds none, nor anything a
    /// remover waits for). Without it, a map whose remover is busy is
    /// passed over: for allocations inside a fault's `map_page` callback
    /// (a copy-on-write copy), which a truncate holding that lock waits for.
    pub(crate) fn alloc_with(&self, wait: bool) -> Result<FrameId, Error> {
        let id = match self.source.alloc() {
            Some(id) => id,
            None => self.alloc_slow(wait)?,
        };
        #[cfg(all(feature = "std", not(pagemap_loom)))]
        self.kswapd.allocated(self);
        Ok(self.take_free(id))
    }

    /// The allocation's slow path: reclaim batches until a frame is free.
    #[cold]
    fn alloc_slow(&self, wait: bool) -> Result<FrameId, Error> {
        self.stats.ctr.add(stats::pool_ctr::DIRECT_RECLAIMS, 1);
        #[cfg(all(feature = "std", not(pagemap_loom)))]
        self.kswapd.wake();
        // A round is idle when no frame was freed anywhere in the pool
        // while it ran (ours or anyone's eviction, a truncate, a drop):
        // pages our scan found busy may be another evictor's, whose frees
        // are progress even when other threads take the frames first.
        let mut idle = 0;
        #[cfg(all(feature = "std", not(pagemap_loom)))]
        let mut idle_since: Option<std::time::Instant> = None;
        let mut fruitless = 0;
        let mut rounds = 0usize;
        let batch = self.reclaim_batch();
        let mut want = batch;
        loop {
            if let Some(id) = self.source.alloc() {
                return Ok(id);
            }
            // Relaxed: a progress hint, read before and after the round.
            let frees = self.frees.load(Ordering::Relaxed);
            #[cfg(all(feature = "std", not(pagemap_loom)))]
            let t = std::time::Instant::now();
            let r = self.reclaim_with(want, wait);
            #[cfg(all(feature = "std", not(pagemap_loom)))]
            self.stats.reclaim.record(t.elapsed());
            if let Some(id) = self.source.alloc() {
                return Ok(id);
            }
            rounds += 1;
            let progress = r.freed > 0 || self.frees.load(Ordering::Relaxed) != frees;
            // A page being paged in or out (BUSY) is in flight even when
            // the policy does not offer it (a swap-in's frame joins the
            // policy only once read): a pool as small as the number of
            // faulting threads is otherwise found "all held" while its
            // pages move (break13). Looked for only when nothing else
            // moved: one pass over the flags, a slow path's.
            let moving = !progress && r.in_flight == 0 && self.any_busy();
            if progress || r.in_flight > 0 || moving {
                idle = 0;
                fruitless = 0;
                want = batch;
            } else if r.selected == 0 {
                idle += 1;
            } else {
                // Victims chosen and kept (a failing write-back, a page
                // taken meanwhile): the next rounds ask for more, so that
                // the policy reaches past them to others.
                fruitless += 1;
                want = (want * 2).min(RECLAIM_BATCH.min(self.capacity()));
            }
            // Give up once rounds that found nothing to evict and nothing
            // in flight have gone on for a while (every frame held: a
            // holder may be about to let go, as a `read_at` copying out
            // does, so the wait is a few time slices, not three rounds),
            // or once every page had about two chances and none left, or
            // when others keep taking what it frees (bounded: an
            // allocation fails rather than loop forever).
            let chances = 2 * self.capacity() / batch + 3;
            let held_out = match idle {
                0 => false,
                #[cfg(all(feature = "std", not(pagemap_loom)))]
                _ => {
                    let since = *idle_since.get_or_insert_with(std::time::Instant::now);
                    if idle > 3 {
                        std::thread::sleep(core::time::Duration::from_micros(50));
                    }
                    let grace = self.held_grace_us.load(Ordering::Relaxed);
                    idle >= 3 && since.elapsed().as_micros() >= u128::from(grace)
                }
                #[cfg(not(all(feature = "std", not(pagemap_loom))))]
                n => n >= 64,
            };
            if idle == 0 {
                #[cfg(all(feature = "std", not(pagemap_loom)))]
                {
                    idle_since = None;
                }
            }
            if held_out || fruitless >= chances || rounds >= 4096 {
                self.stats.ctr.add(stats::pool_ctr::FAILED_ALLOCS, 1);
                return Err(self.exhausted());
            }
            if r.freed == 0 {
                // Let the threads whose pages are busy (loading, being
                // evicted, held for a moment) finish.
                #[cfg(all(feature = "std", not(pagemap_loom)))]
                std::thread::yield_now();
                #[cfg(not(all(feature = "std", not(pagemap_loom))))]
                crate::sync::spin_hint();
            }
        }
    }

    /// Whether some frame is BUSY (a private page moving to or from swap).
    fn any_busy(&self) -> bool {
        // Relaxed: a hint for the allocation's patience.
        self.frames
            .iter()
            .any(|f| f.flags.load(Ordering::Relaxed) & flags::BUSY != 0)
    }

    /// The default of [`set_held_grace`](Self::set_held_grace): 20 ms.
    pub const DEFAULT_HELD_GRACE: core::time::Duration = core::time::Duration::from_millis(20);

    /// How long an allocation that finds every frame held (nothing to
    /// evict, nothing in flight) keeps reclaiming, in case a holder lets go,
    /// before it fails with [`Error::PoolExhausted`]: a holder about to let
    /// go (a `read_at` copying out) may be descheduled for a time slice or
    /// more on a busy machine (2 ms made a one-frame pool shared by two
    /// threads fail). Default [`DEFAULT_HELD_GRACE`](Self::DEFAULT_HELD_GRACE);
    /// zero fails after three idle rounds (a single-threaded user, whose own
    /// holds cannot end meanwhile). Without `std`, 64 idle rounds, whatever
    /// this says. Saturates at about 71 minutes.
    pub fn set_held_grace(&self, grace: core::time::Duration) {
        let us = u32::try_from(grace.as_micros()).unwrap_or(u32::MAX);
        // Relaxed: a setting, read by each allocation that needs it.
        self.held_grace_us.store(us, Ordering::Relaxed);
    }

    /// Victims one direct-reclaim round takes: [`RECLAIM_BATCH`], or a
    /// sixteenth of a small pool (a round that marked the whole pool would
    /// leave concurrent reclaimers nothing to take but pages in flight).
    fn reclaim_batch(&self) -> usize {
        (self.capacity() / 16).clamp(1, RECLAIM_BATCH)
    }

    /// The error of an allocation that reclaim could not satisfy: a census
    /// of the frames (one pass over their flags; a failure path).
    fn exhausted(&self) -> Error {
        let (mut private, mut cached) = (0usize, 0usize);
        for f in self.frames.iter() {
            let bits = f.flags.load(Ordering::Relaxed);
            if bits & flags::FREE != 0 {
                continue;
            }
            if bits & flags::PAGEMAP != 0 {
                cached += 1;
            } else {
                private += 1;
            }
        }
        Error::PoolExhausted {
            capacity: self.capacity(),
            private: u32::try_from(private).unwrap_or(u32::MAX),
            unevictable: u32::try_from(cached).unwrap_or(u32::MAX),
        }
    }

    /// A frame the source just gave out: ours alone from now.
    fn take_free(&self, id: FrameId) -> FrameId {
        let frame = self.frame(id);
        // Relaxed: the frame is ours alone until it is published (a slot
        // word's Release) or handed out (a PrivateFrame moved to its user).
        let old = frame.flags.swap(0, Ordering::Relaxed);
        assert!(
            old & flags::FREE != 0,
            "the frame source gave out frame {id:?}, which is in use ({old:#x})"
        );
        frame.index.store(0, Ordering::Relaxed);
        frame.state.store(0, Ordering::Relaxed);
        self.track_owner_change(id);
        id
    }

    /// Tells the eviction policy about a page just inserted in `id` (owner
    /// and index set, the inserter holding it, so no remover can free it
    /// before this returns).
    pub(crate) fn policy_add(&self, id: FrameId) {
        let old = self.set_flags(id, flags::LRU);
        debug_assert!(
            old & flags::LRU == 0,
            "frame {id:?} added to the policy twice"
        );
        // A fresh word for the policy (its contract). Relaxed: the policy
        // orders its own words (under its lock, or by its own atomics).
        self.policy_words[id.slot()].store(0, Ordering::Relaxed);
        self.with_policy_frames(|f| self.policy.add(f, id));
    }

    /// A hit on the page in `word`, for a policy that tracks every access.
    #[inline]
    pub(crate) fn policy_hit(&self, word: crate::slot::SlotWord) {
        if self.policy_on_hit {
            if let Some(id) = word.frame() {
                self.with_policy_frames(|f| self.policy.accessed(f, id));
            }
        }
    }

    /// The eviction policy.
    pub fn policy(&self) -> &dyn EvictionPolicy {
        &*self.policy
    }

    /// Statistics now: the pool's counters, every registered map's (and
    /// the dropped maps') [`MapStats`] summed, and (with `std`) latency
    /// histograms. Allocates (a reader's call).
    pub fn stats(&self) -> PoolStats {
        use stats::pool_ctr as c;
        let mut maps = *self.stats.gone.lock();
        for m in self.registered_maps() {
            maps.add(&m.get().map_stats());
        }
        PoolStats {
            maps,
            free_frames: self.free_frames(),
            direct_reclaims: self.stats.ctr.get(c::DIRECT_RECLAIMS),
            failed_allocs: self.stats.ctr.get(c::FAILED_ALLOCS),
            reclaim_batches: self.stats.ctr.get(c::RECLAIM_BATCHES),
            scanned: self.stats.ctr.get(c::SCANNED),
            reclaimed: self.stats.ctr.get(c::FREED),
            kept: self.stats.ctr.get(c::KEPT),
            refaults: self.policy.refaults(),
            #[cfg(all(feature = "std", not(pagemap_loom)))]
            load_miss_ns: self.stats.load_miss.snapshot(),
            #[cfg(all(feature = "std", not(pagemap_loom)))]
            reclaim_ns: self.stats.reclaim.snapshot(),
            #[cfg(all(feature = "std", not(pagemap_loom)))]
            select_ns: self.stats.select.snapshot(),
        }
    }

    /// An owned frame for use outside any page map, freed when the handle
    /// is dropped (see [`PrivateFrame`]).
    ///
    /// # Errors
    /// [`Error::PoolExhausted`] if no frame is free.
    pub fn alloc_private(self: &alloc::sync::Arc<Self>) -> Result<PrivateFrame, Error> {
        // Never waiting for a remover: a fault's copy-on-write allocates
        // inside `map_page`'s callback, which a truncate waits for.
        let id = self.alloc_with(false)?;
        // One map reference: the handle's. Relaxed: the frame is ours
        // alone until the handle is published (moved to its user).
        self.frame(id).state.store(1, Ordering::Relaxed);
        Ok(PrivateFrame {
            pool: self.clone(),
            id,
        })
    }

    /// Returns a frame to the source. The caller guarantees nothing can
    /// reach it any more: no slot word, no page table entry, no TLB entry,
    /// no I/O in flight.
    ///
    /// # Panics
    /// If the frame is already free (a double free) or page-locked.
    pub(crate) fn free(&self, id: FrameId) {
        self.track_owner_change(id);
        let frame = self.frame(id);
        // The policy forgets the page before the frame can be reused (the
        // LRU bit is set once, by the inserter, and only cleared here, by
        // the frame's only owner).
        if frame.flags.load(Ordering::Relaxed) & flags::LRU != 0 {
            self.with_policy_frames(|f| self.policy.remove(f, id));
        }
        // Relaxed: nobody else can reach the frame (the caller's guarantee);
        // the source orders its reuse (its free happens-before the alloc
        // that returns it again: RegionFrames' Release push and Acquire pop).
        let old = frame.flags.swap(flags::FREE, Ordering::Relaxed);
        assert!(old & flags::FREE == 0, "double free of frame {id:?}");
        assert!(
            old & flags::LOCKED == 0,
            "freeing a locked frame {id:?} ({old:#x})"
        );
        frame.owner.store(0, Ordering::Relaxed);
        // Relaxed: a progress count (see `alloc_slow`).
        self.frees.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the pool allocated `id` from its source (`alloc`), the
        // FREE flag just caught any second free, and the caller guarantees
        // nothing reaches the frame any more.
        unsafe { self.source.free(id) };
    }

    pub(crate) fn frame(&self, id: FrameId) -> &Frame {
        &self.frames[id.slot()]
    }

    /// The contents of frame `id` as the library accesses them: 512 atomic
    /// words.
    fn words(&self, id: FrameId) -> &[data::AtomicU64; PAGE_WORDS] {
        self.track_access(id);
        let p = self.frame_ptr(id).cast::<data::AtomicU64>();
        // SAFETY: the source guarantees PAGE_SIZE bytes at this address,
        // 8-aligned (checked for a linear base; the source's contract
        // otherwise), valid while the pool (which owns the source) lives,
        // which `&self` outlives the returned borrow by. Any bit pattern is
        // a valid AtomicU64, and every access the library makes to the
        // memory while it may be shared is atomic (a store's direct access
        // happens while the frame is exclusive: see `contents`).
        unsafe { &*p.as_ptr().cast::<[data::AtomicU64; PAGE_WORDS]>() }
    }

    /// A content access of frame `id` (a read or write of its bytes by
    /// anyone: the library, a holder, a CPU through a TLB entry). Nothing
    /// outside loom; under loom a read of the frame's ownership token, so
    /// loom fails the execution if the access is not ordered after the
    /// frame's allocation or not ordered before its free. Concurrent content
    /// accesses do not conflict with each other (they are all reads).
    #[inline(always)]
    fn track_access(&self, id: FrameId) {
        #[cfg(pagemap_loom)]
        if self.tracking.load(std::sync::atomic::Ordering::Relaxed) {
            self.tokens[id.slot()].0.with(|_| ());
        }
        #[cfg(not(pagemap_loom))]
        let _ = id;
    }

    /// The frame changes hands (allocation or free): under loom a write of
    /// its ownership token, which must happen-after every earlier content
    /// access (see [`track_access`](Self::track_access)). Always tracked:
    /// the source orders a free before the allocation that returns the
    /// frame again (RegionFrames: the free list's Release push, then its
    /// Acquire pop; no lock).
    #[inline(always)]
    fn track_owner_change(&self, id: FrameId) {
        #[cfg(pagemap_loom)]
        self.tokens[id.slot()].0.with_mut(|_| ());
        #[cfg(not(pagemap_loom))]
        let _ = id;
    }

    // ---- metadata -------------------------------------------------------

    /// Sets owner and index (before the frame is published in a slot).
    pub(crate) fn set_owner(&self, id: FrameId, owner: u32, index: u64, initial_flags: u32) {
        let f = self.frame(id);
        f.owner.store(owner, Ordering::Relaxed);
        f.index.store(index, Ordering::Relaxed);
        // Relaxed: the slot word's Release publish orders all three.
        f.flags.store(initial_flags, Ordering::Relaxed);
    }

    /// The (owner, index) of an owned frame (the index word is the orphan
    /// count once DETACHED). Acquire on the index: pairs with
    /// [`set_orphans`](Self::set_orphans)' Release, so a reader who sees a
    /// count there also sees the DETACHED flag set before it.
    pub(crate) fn owner(&self, id: FrameId) -> (u32, u64) {
        let f = self.frame(id);
        (
            f.owner.load(Ordering::Relaxed),
            f.index.load(Ordering::Acquire),
        )
    }

    /// Truncate, detaching a held page (DETACHED already set, the page
    /// still in its slot): `holders` is the slot's count it is about to
    /// take out of the slot word. Written before the slot CAS that detaches
    /// the page (and again if that CAS fails), so no holder can reach this
    /// count before it is right. Release: pairs with `owner`'s Acquire.
    pub(crate) fn set_orphans(&self, id: FrameId, holders: u64) {
        self.frame(id).index.store(holders, Ordering::Release);
    }

    /// Map references of a private frame (see [`PrivateFrame`]), `None` if
    /// `id` is free or a page map's. A snapshot; exact for a caller holding
    /// the only reference (nobody else can add one), unless the frame is in
    /// the swap cache (a fault may take a reference from there:
    /// [`Swap::lookup`](crate::swap::Swap::lookup)).
    pub fn private_map_count(&self, id: FrameId) -> Option<u64> {
        let f = self.frame(id);
        // Acquire: pairs with `private_put`'s Release, so a holder that
        // sees 1 also sees every access the other holders made before
        // they let go (it is about to write the frame in place).
        let s = crate::swap::state::State(f.state.load(Ordering::Acquire));
        let bits = f.flags.load(Ordering::Relaxed);
        (bits & (flags::FREE | flags::PAGEMAP) == 0).then_some(s.refs())
    }

    /// A private frame's swap state word (a snapshot).
    pub(crate) fn private_state(&self, id: FrameId) -> crate::swap::state::State {
        // SeqCst: see `swap::state` (the map references against BUSY).
        crate::swap::state::State(crate::sync::sb::load(
            &self.frame(id).state,
            Ordering::SeqCst,
        ))
    }

    /// Applies `f` to a private frame's state word until it succeeds or
    /// refuses; the old word. SeqCst: see `swap::state`.
    pub(crate) fn private_update(
        &self,
        id: FrameId,
        mut f: impl FnMut(crate::swap::state::State) -> Option<crate::swap::state::State>,
    ) -> Result<crate::swap::state::State, crate::swap::state::State> {
        use crate::swap::state::State;
        let word = &self.frame(id).state;
        let mut old = word.load(Ordering::SeqCst);
        loop {
            let Some(new) = f(State(old)) else {
                return Err(State(old));
            };
            // The RMW half of the reference/BUSY pair (`swap::state`).
            match crate::sync::sb::compare_exchange_weak(
                word,
                old,
                new.0,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Ok(State(old)),
                Err(seen) => old = seen,
            }
        }
    }

    /// One more map reference to a private frame, refused at `max`.
    pub(crate) fn private_get(&self, id: FrameId, max: u64) -> bool {
        self.private_update(id, |s| s.share(max)).is_ok()
    }

    /// One map reference fewer; `true` if the frame is now released (no
    /// reference and not in the swap cache), for the caller to free.
    pub(crate) fn private_put(&self, id: FrameId) -> bool {
        match self.private_update(id, |s| (s.refs() > 0).then(|| s.put())) {
            Ok(old) => old.put().released(),
            Err(s) => panic!("put of private frame {id:?} with no reference ({s:?})"),
        }
    }

    /// Drops one map reference (a [`PrivateFrame`]'s drop): the last frees
    /// the frame; if the swap cache still keeps it, its owner is told (it
    /// frees the frame and its location if no swap entry needs them).
    pub(crate) fn private_release(&self, id: FrameId) {
        let new = match self.private_update(id, |s| (s.refs() > 0).then(|| s.put())) {
            Ok(old) => old.put(),
            Err(s) => panic!("put of private frame {id:?} with no reference ({s:?})"),
        };
        if new.released() {
            self.free(id);
        } else if new.refs() == 0 && new.cached() {
            self.cache_only(id);
        }
    }

    /// The owner id a private frame was made evictable for
    /// ([`PrivateFrame::make_evictable`]), if any (`None` too for a frame
    /// that is free or a page map's, or not in the pool).
    pub fn private_owner(&self, id: FrameId) -> Option<u32> {
        if id.slot() >= self.frames.len() {
            return None;
        }
        let bits = self.flags(id);
        let (owner, _) = self.owner(id);
        (bits & (flags::FREE | flags::PAGEMAP) == 0 && owner != 0).then_some(owner)
    }

    /// Sets a private frame's rmap owner and key (its owner's address of
    /// the page, for reclaim's walk back to its page table entries). The
    /// caller holds a reference.
    pub fn set_private_rmap(&self, id: FrameId, owner: u32, key: u64) {
        let f = self.frame(id);
        // Relaxed: published with the entry that names the frame (SeqCst).
        f.owner.store(owner, Ordering::Relaxed);
        f.index.store(key, Ordering::Relaxed);
    }

    /// Holders of a detached frame now.
    pub(crate) fn orphans(&self, id: FrameId) -> u64 {
        // Relaxed: a snapshot for reports.
        self.frame(id).index.load(Ordering::Relaxed)
    }

    /// One more holder of a detached frame (a `try_clone` of a detached
    /// reference), refused at `max`. Relaxed: the caller is a holder, so
    /// the count cannot reach zero meanwhile and nothing is published.
    pub(crate) fn orphan_get(&self, id: FrameId, max: u64) -> bool {
        let index = &self.frame(id).index;
        let mut old = index.load(Ordering::Relaxed);
        loop {
            if old >= max {
                return false;
            }
            match index.compare_exchange_weak(old, old + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => old = seen,
            }
        }
    }

    /// One holder fewer of a detached frame; `true` for the last one, who
    /// then owns the frame (and frees it). AcqRel: every holder's accesses
    /// (Release) happen-before the last one's free (Acquire).
    pub(crate) fn orphan_put(&self, id: FrameId) -> bool {
        let old = self.frame(id).index.fetch_sub(1, Ordering::AcqRel);
        assert!(old > 0, "put of detached frame {id:?} with no holder");
        old == 1
    }

    /// Current flags. Acquire: pairs with the Release of whoever set them
    /// (UPTODATE after a read, DIRTY after a copy).
    pub fn flags(&self, id: FrameId) -> u32 {
        self.frame(id).flags.load(Ordering::Acquire)
    }

    /// Sets bits, returning the old flags. AcqRel: a flag change orders the
    /// contents written before it (Release) and sees the previous setter's (Acquire).
    pub(crate) fn set_flags(&self, id: FrameId, bits: u32) -> u32 {
        self.frame(id).flags.fetch_or(bits, Ordering::AcqRel)
    }

    /// Clears bits, returning the old flags (orderings as [`set_flags`](Self::set_flags)).
    pub(crate) fn clear_flags(&self, id: FrameId, bits: u32) -> u32 {
        self.frame(id).flags.fetch_and(!bits, Ordering::AcqRel)
    }

    /// Records a failed read's errno with ERROR, in one step.
    pub(crate) fn set_error(&self, id: FrameId, e: StoreError) {
        // `StoreError` keeps codes in 1..=255: they fit the 8 bits.
        let code = (e.code() as u32) << flags::ERRNO_SHIFT;
        let f = self.frame(id);
        let mut old = f.flags.load(Ordering::Relaxed);
        loop {
            let new = (old & !flags::ERRNO_MASK) | flags::ERROR | code;
            // AcqRel, as `set_flags`: the loader's waiters read it after
            // the unlock (Release) that follows.
            match f
                .flags
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(seen) => old = seen,
            }
        }
    }

    /// The errno recorded in the flags (0 if none).
    pub(crate) fn error_code(&self, id: FrameId) -> i32 {
        ((self.flags(id) & flags::ERRNO_MASK) >> flags::ERRNO_SHIFT) as i32
    }

    /// The error recorded with ERROR: its errno (what a failed read's
    /// waiters report).
    pub(crate) fn read_error(&self, id: FrameId) -> StoreError {
        StoreError::new(self.error_code(id))
    }

    /// Records a failed write-back request's errno with WRITE_ERROR (the
    /// page is up to date, so the errno bits are free).
    pub(crate) fn set_write_error(&self, id: FrameId, e: StoreError) {
        let code = (e.code() as u32) << flags::ERRNO_SHIFT;
        // AcqRel, as `set_flags`: the write-back reads it after the
        // completion's Release clear of INFLIGHT.
        self.frame(id)
            .flags
            .fetch_or(flags::WRITE_ERROR | code, Ordering::AcqRel);
    }

    /// Takes a write-back request's error out of the flags.
    pub(crate) fn take_write_error(&self, id: FrameId) -> StoreError {
        let code = self.error_code(id);
        self.clear_flags(id, flags::WRITE_ERROR | flags::ERRNO_MASK);
        StoreError::new(code)
    }
}

/// Loom builds only: the models hold a page lock as the library's own
/// paths do (a read, a `write`, a write-back's snapshot), to check what must
/// not wait for it. Not part of the API of a normal build.
#[cfg(pagemap_loom)]
impl FramePool {
    /// Takes the page lock of `id` (see [`PageRef::write`](crate::PageRef::write)).
    pub fn lock_for_model(&self, id: FrameId) {
        self.lock(id);
    }

    /// Drops the page lock of `id`.
    pub fn unlock_for_model(&self, id: FrameId) {
        self.unlock(id);
    }

    /// Turns the ownership tracking of content accesses off or on (see
    /// [`track_access`](Self::track_access)): off for a model that shows a
    /// stale access (shootdowns disabled), which loom would otherwise
    /// report as a race with the free instead of letting the model see it.
    pub fn set_access_tracking(&self, on: bool) {
        // Relaxed: loom runs every model thread on one OS thread.
        self.tracking
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn into_raw_and_from_raw_keep_the_pool_count() {
        let pool = Arc::new(FramePool::new(2).unwrap());
        let raw = pool.alloc_private().unwrap().into_raw();
        assert_eq!(Arc::strong_count(&pool), 1, "into_raw leaked the pool");
        // SAFETY: `raw` came from `into_raw` above and nothing else owns it.
        let frame = unsafe { PrivateFrame::from_raw(&pool, raw) };
        assert_eq!(Arc::strong_count(&pool), 2);
        drop(frame);
        assert_eq!(Arc::strong_count(&pool), 1);
        assert_eq!(pool.free_frames(), 2);
    }

    /// Byte copies in and out at every alignment of offset and length
    /// (the word loops' head, middle and tail) match a byte model.
    #[test]
    fn byte_copies_match_a_model_at_every_alignment() {
        let pool = FramePool::new(1).unwrap();
        let id = pool.alloc().unwrap();
        let mut model = vec![0u8; PAGE_SIZE];
        pool.write_page(id, &[0; PAGE_SIZE]);
        let mut n = 0u8;
        let edge = if cfg!(miri) { 9 } else { 40 };
        for offset in (0..edge).chain(PAGE_SIZE - edge..PAGE_SIZE) {
            for len in [0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 64, 100] {
                let len = len.min(PAGE_SIZE - offset);
                n = n.wrapping_add(1);
                let data: Vec<u8> = (0..len).map(|i| n.wrapping_add(i as u8)).collect();
                pool.write(id, offset, &data).unwrap();
                model[offset..offset + len].copy_from_slice(&data);
                for (o, l) in [(offset, len), (offset.saturating_sub(5), len + 10)] {
                    let l = l.min(PAGE_SIZE - o);
                    let mut out = vec![0xAAu8; l];
                    pool.read_bytes(id, o, &mut out).unwrap();
                    assert_eq!(
                        out,
                        model[o..o + l],
                        "read {o}+{l} after write {offset}+{len}"
                    );
                }
            }
        }
        let mut whole = [0u8; PAGE_SIZE];
        pool.copy_page(id, &mut whole);
        assert_eq!(&whole[..], &model[..]);
    }

    #[test]
    fn metadata_is_at_most_32_bytes() {
        let pool = FramePool::new(1).unwrap();
        assert_eq!(core::mem::size_of::<Frame>(), 24);
        assert_eq!(pool.metadata_bytes_per_frame(), 28);
        assert!(pool.metadata_bytes_per_frame() <= 32);
    }

    #[test]
    fn exhaustion_is_an_error_and_free_refills() {
        let pool = FramePool::new(3).unwrap();
        let ids: Vec<_> = (0..3).map(|_| pool.alloc().unwrap()).collect();
        assert!(ids.iter().all(|id| id.get() != 0));
        assert!(matches!(
            pool.alloc(),
            Err(Error::PoolExhausted { capacity: 3, .. })
        ));
        pool.free(ids[1]);
        assert_eq!(pool.alloc().unwrap(), ids[1]);
        assert_eq!(pool.free_frames(), 0);
    }

    #[test]
    fn bad_capacity_is_an_error() {
        assert!(matches!(
            FramePool::new(0),
            Err(Error::InvalidCapacity { .. })
        ));
        assert!(matches!(
            FramePool::new(FramePool::MAX_CAPACITY + 1),
            Err(Error::InvalidCapacity { .. })
        ));
    }

    #[test]
    fn unaligned_contents_round_trip() {
        let pool = FramePool::new(1).unwrap();
        let id = pool.alloc().unwrap();
        let msg: Vec<u8> = (0..100u8).collect();
        pool.write(id, 4093 - 100, &msg).unwrap();
        let mut back = vec![0; 100];
        pool.read_bytes(id, 4093 - 100, &mut back).unwrap();
        assert_eq!(back, msg);
        let mut one = [0u8; 1];
        pool.read_bytes(id, 4093 - 101, &mut one).unwrap();
        assert_eq!(one[0], 0, "neighbouring byte untouched");
        assert!(matches!(
            pool.write(id, 4090, &[0; 7]),
            Err(Error::OutOfBounds { .. })
        ));
        assert!(matches!(
            pool.read_bytes(id, usize::MAX, &mut one),
            Err(Error::OutOfBounds { .. })
        ));
    }

    #[test]
    fn page_lock_wakes_waiter() {
        let pool = std::sync::Arc::new(FramePool::new(1).unwrap());
        let id = pool.alloc().unwrap();
        pool.lock(id);
        let p2 = pool.clone();
        let t = std::thread::spawn(move || {
            p2.lock(id);
            p2.unlock(id);
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        pool.unlock(id);
        t.join().unwrap();
        assert_eq!(pool.flags(id) & flags::LOCKED, 0);
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn a_double_free_is_caught() {
        let pool = FramePool::new(2).unwrap();
        let id = pool.alloc().unwrap();
        pool.free(id);
        pool.free(id);
    }

    #[test]
    #[should_panic(expected = "with no reference")]
    fn a_second_from_raw_is_caught_at_its_drop() {
        let pool = std::sync::Arc::new(FramePool::new(2).unwrap());
        let raw = pool.alloc_private().unwrap().into_raw();
        // SAFETY (violated on purpose, to show the assertion): two handles.
        let a = unsafe { PrivateFrame::from_raw(&pool, raw) };
        let b = unsafe { PrivateFrame::from_raw(&pool, raw) };
        drop(a);
        drop(b);
    }

    /// The issue-9 reproduction (free a published page's frame, load another
    /// page, compare frames), through the one remaining route, which is
    /// `unsafe`: it now panics before the free instead of letting two pages
    /// share a frame. (The safe route, `FramePool::free`, does not compile:
    /// see the `compile_fail` example on [`FramePool`].)
    #[test]
    #[should_panic(expected = "not a private frame")]
    fn a_page_maps_frame_cannot_become_a_private_frame() {
        let pool = Arc::new(FramePool::new(2).unwrap());
        let map = crate::PageMap::new(pool.clone(), Arc::new(crate::MemStore::new()));
        let page = map.load(1).unwrap();
        // SAFETY (violated on purpose, to show the assertion): the frame is
        // the page map's, not one that `into_raw` gave up.
        let stolen = unsafe { PrivateFrame::from_raw(&pool, page.frame()) };
        drop(stolen);
        let other = map.load(2).unwrap();
        assert_ne!(page.frame(), other.frame(), "two pages share a frame");
    }

    #[test]
    fn private_frames_free_themselves() {
        let pool = std::sync::Arc::new(FramePool::new(1).unwrap());
        let f = pool.alloc_private().unwrap();
        assert_eq!(pool.flags(f.id()) & flags::FREE, 0);
        drop(f);
        assert_eq!(pool.free_frames(), 1);
        assert!(pool.alloc_private().is_ok());
    }

    #[test]
    fn read_errno_is_kept() {
        let pool = FramePool::new(1).unwrap();
        let id = pool.alloc().unwrap();
        pool.set_error(id, StoreError::new(StoreError::EACCES));
        assert_ne!(pool.flags(id) & flags::ERROR, 0);
        assert_eq!(pool.read_error(id).code(), StoreError::EACCES);
    }
}
