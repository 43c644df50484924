//! Frame sources: where a [`FramePool`](super::FramePool)'s frames and
//! their memory come from.
//!
//! A pool keeps each frame's metadata (flags, owner, index: 16 bytes) and
//! its bit locks; the memory itself, its addresses and the choice of which
//! frame is free belong to a [`FrameSource`]. A kernel implements the trait
//! over its own physical allocator (frame numbers, its direct map); the
//! crate offers [`RegionFrames`], frames carved out of one contiguous memory
//! region: a heap allocation it owns ([`RegionFrames::heap`], what
//! [`FramePool::new`](super::FramePool::new) uses) or a region the caller
//! owns ([`RegionFrames::new`]: an mmap, a reserved range of physical
//! memory seen through a direct map).

use core::fmt;
use core::ptr::NonNull;

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use alloc::boxed::Box;

use super::FrameId;
use crate::error::Error;
use crate::sync::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use crate::PAGE_SIZE;

/// Where frames come from: their allocation, memory and addresses.
///
/// Frame ids are dense: `1..=capacity()` (a kernel maps its frame numbers
/// onto them, e.g. `pfn - first_pfn + 1`), so a pool keeps metadata for
/// each in an array, as Linux keeps a `struct page` per frame.
///
/// # Safety
///
/// The pool turns the pointers this returns into references, so an
/// implementation must guarantee, for every id in `1..=capacity()`:
///
/// * [`frame_ptr`](Self::frame_ptr) returns the same pointer every time, to
///   [`PAGE_SIZE`] bytes aligned to at least 8, valid for reads and writes
///   for as long as the source lives, and disjoint from every other id's;
/// * between [`alloc`](Self::alloc) returning the id and the pool's
///   [`free`](Self::free) of it, nothing but the pool (and those it hands
///   the frame to: page table entries, devices doing the pool's I/O)
///   accesses that memory, and `alloc` does not return the id again;
/// * a [`free`](Self::free) of an id happens-before the `alloc` that
///   returns it again (a lock, or a Release publish read by an Acquire),
///   so the last user's accesses are ordered before the next user's;
/// * [`linear_base`](Self::linear_base), if `Some(base)`, is `frame_ptr(1)`
///   and `frame_ptr(id)` is `base + (id - 1) * PAGE_SIZE` for every id.
pub unsafe trait FrameSource: Send + Sync {
    /// The number of frame ids (ids are `1..=capacity()`).
    fn capacity(&self) -> usize;

    /// Takes a free frame, or `None` if there is none. Its contents are
    /// whatever its last user left (the pool fills a frame before anyone
    /// can read it).
    fn alloc(&self) -> Option<FrameId>;

    /// Returns a frame `alloc` gave out. The pool calls it once nothing can
    /// reach the frame: no slot word, no page table entry, no TLB entry
    /// (shootdowns done), no I/O in flight.
    ///
    /// # Safety
    /// `id` came from this source's `alloc`, has not been freed since, and
    /// nothing uses it any more. Freeing a frame a pool still uses would let
    /// `alloc` hand it out again (to that pool or another one sharing the
    /// source), and two pages would share it; so a pool's frames are freed
    /// only by the pool (through their [`PrivateFrame`](super::PrivateFrame)
    /// or a page map's removal), and no safe call frees one:
    ///
    /// ```compile_fail
    /// use pagemap::{FramePool, FrameSource};
    /// let pool = FramePool::new(2).unwrap();
    /// let id = pool.source().alloc().unwrap();
    /// pool.source().free(id); // unsafe: does not compile without `unsafe`
    /// ```
    unsafe fn free(&self, id: FrameId);

    /// Frames free now (a snapshot, for reports and tests).
    fn free_frames(&self) -> usize;

    /// The frame's memory, as the CPU addresses it (a kernel: its direct
    /// map, `phys_to_virt(phys_addr(id))`).
    fn frame_ptr(&self, id: FrameId) -> NonNull<u8>;

    /// The frame's physical address, what a page table entry or a DMA
    /// descriptor takes (for memory that has none, e.g. a heap region: its
    /// virtual address).
    fn phys_addr(&self, id: FrameId) -> u64;

    /// `Some(base)` if frame `id` lives at `base + (id - 1) * PAGE_SIZE` for
    /// every id: the pool then computes addresses without calling
    /// [`frame_ptr`](Self::frame_ptr). The default says no.
    fn linear_base(&self) -> Option<NonNull<u8>> {
        None
    }

    /// Bytes of metadata this source spends per frame (for
    /// [`FramePool::metadata_bytes_per_frame`](super::FramePool::metadata_bytes_per_frame)).
    fn metadata_bytes_per_frame(&self) -> usize {
        0
    }
}

// SAFETY: forwards every call to the shared source, whose guarantees hold
// whoever holds it (a kernel shares one source between its pool and its own
// frees, e.g. `ShootdownBatch::defer_free_to`).
unsafe impl<T: FrameSource + ?Sized> FrameSource for alloc::sync::Arc<T> {
    fn capacity(&self) -> usize {
        (**self).capacity()
    }
    fn alloc(&self) -> Option<FrameId> {
        (**self).alloc()
    }
    unsafe fn free(&self, id: FrameId) {
        // SAFETY: the caller's promise, passed on.
        unsafe { (**self).free(id) }
    }
    fn free_frames(&self) -> usize {
        (**self).free_frames()
    }
    fn frame_ptr(&self, id: FrameId) -> NonNull<u8> {
        (**self).frame_ptr(id)
    }
    fn phys_addr(&self, id: FrameId) -> u64 {
        (**self).phys_addr(id)
    }
    fn linear_base(&self) -> Option<NonNull<u8>> {
        (**self).linear_base()
    }
    fn metadata_bytes_per_frame(&self) -> usize {
        (**self).metadata_bytes_per_frame()
    }
}

/// Frames carved out of one contiguous memory region, with a lock-free free
/// list of 4 bytes per frame (links in an array beside the region, so free
/// frames' memory is never touched).
///
/// The free list is a Treiber stack: [`alloc`](FrameSource::alloc) and
/// [`free`](FrameSource::free) take no lock, so threads allocating and
/// freeing under memory pressure (reclaim on allocation) do not serialise
/// on one mutex; they contend only on the head word's cache line. A fresh
/// list hands out low frame ids first.
///
/// ```
/// use pagemap::{FramePool, FrameSource, RegionFrames, PAGE_SIZE};
///
/// // A region the caller owns (a kernel: reserved physical memory through
/// // its direct map; here a page-aligned heap allocation).
/// let layout = std::alloc::Layout::from_size_align(4 * PAGE_SIZE, PAGE_SIZE).unwrap();
/// let base = std::ptr::NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap();
/// // SAFETY: the region is ours, valid and unused, and outlives the source
/// // (it is freed after the pool below is dropped).
/// let frames = unsafe { RegionFrames::new(base, 4, 0x10_0000).unwrap() };
/// let pool = std::sync::Arc::new(FramePool::with_source(frames).unwrap());
/// let f = pool.alloc_private().unwrap();
/// assert_eq!(pool.phys_addr(f.id()), 0x10_0000 + (f.id().get() as u64 - 1) * 4096);
/// assert_eq!(pool.frame_ptr(f.id()).as_ptr() as usize,
///            base.as_ptr() as usize + (f.id().get() as usize - 1) * 4096);
/// drop((f, pool));
/// unsafe { std::alloc::dealloc(base.as_ptr(), layout) };
/// ```
pub struct RegionFrames {
    base: NonNull<u8>,
    frames: usize,
    phys_base: u64,
    /// `next[id - 1]`: the free frame after `id` (0: none). Meaningful only
    /// while `id` is on the list; a reader that lost `id` to another
    /// thread may read a stale link, which the head's tag makes useless.
    next: Box<[AtomicU32]>,
    /// The stack's top: an ABA tag (high 32 bits, bumped by every change)
    /// and the first free frame (low 32 bits; 0: none). See [`Head`].
    head: AtomicU64,
    /// Free frames, counted before a push and after a pop, so it never
    /// underflows and may briefly count frames in flight (a snapshot).
    nr_free: AtomicUsize,
    /// The allocation to free on drop (`heap` only).
    owned: Option<(NonNull<u8>, Layout)>,
}

// SAFETY: the region's memory is only reached through frames handed out by
// `alloc`, whose users the pool orders; the head, links and counters are
// atomics. The raw pointer is what makes the type !Send/!Sync by
// default, and it is never used to reach memory outside the region.
unsafe impl Send for RegionFrames {}
// SAFETY: as for Send.
unsafe impl Sync for RegionFrames {}

impl RegionFrames {
    /// The largest region, in frames: ids are `u32`s, all ones excluded (the
    /// slot word's frame field is exactly a `u32`).
    pub const MAX_FRAMES: usize = u32::MAX as usize - 1;

    /// Frames over the caller's region of `frames * PAGE_SIZE` bytes at
    /// `base`, whose first byte has physical address `phys_base` (frame
    /// `id` is at `base + (id - 1) * PAGE_SIZE`, physical `phys_base + (id -
    /// 1) * PAGE_SIZE`). All frames start free.
    ///
    /// # Errors
    /// [`Error::InvalidCapacity`] for 0 frames or more than
    /// [`MAX_FRAMES`](Self::MAX_FRAMES), or a region past the end of the
    /// address space (virtual or physical).
    ///
    /// # Panics
    /// If `base` is not 8-byte aligned, or `phys_base` not page aligned (a
    /// page table entry cannot name such a frame).
    ///
    /// # Safety
    /// The region must be valid for reads and writes for as long as the
    /// source (and any pool over it) lives, and nothing else may access it
    /// meanwhile, except through the frames this source hands out.
    pub unsafe fn new(base: NonNull<u8>, frames: usize, phys_base: u64) -> Result<Self, Error> {
        assert!(
            (base.as_ptr() as usize).is_multiple_of(8),
            "a frame region must be 8-byte aligned (contents are 64-bit words)"
        );
        assert!(
            phys_base.is_multiple_of(PAGE_SIZE as u64),
            "a frame region's physical base must be page aligned"
        );
        let invalid = Error::InvalidCapacity {
            requested: frames,
            max: Self::MAX_FRAMES,
        };
        if frames == 0 || frames > Self::MAX_FRAMES {
            return Err(invalid);
        }
        let bytes = frames.checked_mul(PAGE_SIZE).ok_or(invalid)?;
        // Every frame's physical address must exist too (`phys_addr` adds).
        if (base.as_ptr() as usize).checked_add(bytes).is_none()
            || phys_base.checked_add(bytes as u64).is_none()
        {
            return Err(Error::InvalidCapacity {
                requested: frames,
                max: Self::MAX_FRAMES,
            });
        }
        // Free list: 1 -> 2 -> ... -> frames -> 0 (low frames first).
        let next = (0..frames)
            .map(|i| AtomicU32::new(if i + 1 < frames { i as u32 + 2 } else { 0 }))
            .collect();
        Ok(Self {
            base,
            frames,
            phys_base,
            next,
            head: AtomicU64::new(Head { tag: 0, id: 1 }.pack()),
            nr_free: AtomicUsize::new(frames),
            owned: None,
        })
    }

    /// `frames` zeroed frames in a page-aligned heap allocation the source
    /// owns (freed when it is dropped). Zeroed memory is reserved lazily on
    /// most systems, so untouched frames cost no resident memory.
    ///
    /// # Errors
    /// [`Error::InvalidCapacity`] as for [`new`](Self::new), or if the
    /// allocation fails.
    pub fn heap(frames: usize) -> Result<Self, Error> {
        let invalid = Error::InvalidCapacity {
            requested: frames,
            max: Self::MAX_FRAMES,
        };
        if frames == 0 || frames > Self::MAX_FRAMES {
            return Err(invalid);
        }
        // One page more than needed, at the allocator's ordinary alignment,
        // and the region starts at the first page boundary inside: asking
        // the allocator for page alignment instead makes the system
        // allocator zero the block by hand (aligned_alloc + memset), which
        // commits every frame at once (4 GiB for a million frames) and
        // gives up the lazily zeroed pages (and the transparent huge pages)
        // that a plain calloc-style allocation gets from the kernel.
        let bytes = frames
            .checked_add(1)
            .and_then(|n| n.checked_mul(PAGE_SIZE))
            .ok_or(invalid)?;
        let layout = Layout::from_size_align(bytes, 8).map_err(|_| Error::InvalidCapacity {
            requested: frames,
            max: Self::MAX_FRAMES,
        })?;
        // SAFETY: the layout's size is non-zero (frames >= 1).
        let block =
            NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or(Error::InvalidCapacity {
                requested: frames,
                max: Self::MAX_FRAMES,
            })?;
        let pad = block.as_ptr().align_offset(PAGE_SIZE);
        debug_assert!(pad < PAGE_SIZE);
        // SAFETY: pad < PAGE_SIZE, and the block has PAGE_SIZE bytes more
        // than the region: the region stays inside it.
        let base = unsafe { block.add(pad) };
        #[cfg(all(feature = "std", target_os = "linux"))]
        advise_huge_pages(base, frames * PAGE_SIZE);
        // SAFETY: the region is ours (inside our allocation), valid, page
        // aligned and used by nothing else; it lives until our drop.
        let mut this = unsafe { Self::new(base, frames, base.as_ptr() as u64)? };
        this.owned = Some((block, layout));
        Ok(this)
    }

    fn link(&self, id: FrameId) -> &AtomicU32 {
        &self.next[id.get() as usize - 1]
    }
}

/// The free list's head word, unpacked: `tag << 32 | id`.
///
/// The tag makes a pop's compare-and-swap refuse a head that left and came
/// back (ABA): a popper reads `next[id - 1]` of the head it saw, and if
/// meanwhile `id` was popped, other frames popped and `id` pushed again,
/// the head holds the same id but the link read may name a frame that is
/// no longer free. Every successful CAS bumps the tag, so that head word
/// differs from the one the popper saw.
///
/// The tag is 32 bits and wraps: the CAS would wrongly succeed only if the
/// popper stalled, between its head load and its CAS, across a multiple of
/// exactly 2^32 head changes (about a minute of nothing but allocations at
/// the fastest rate) and the head then held the same id again. A stall that
/// long on those two instructions, landing on that exact count, is not a
/// practical risk; 64-bit ids or a double-width CAS would cost the 4-byte
/// links or portability for it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Head {
    tag: u32,
    /// The first free frame's id (0: the list is empty).
    id: u32,
}

impl Head {
    fn pack(self) -> u64 {
        (u64::from(self.tag) << 32) | u64::from(self.id)
    }

    fn unpack(word: u64) -> Self {
        Self {
            tag: (word >> 32) as u32,
            id: word as u32,
        }
    }

    /// The next head word: `id` on top, the tag bumped (wrapping).
    fn next(self, id: u32) -> u64 {
        Head {
            tag: self.tag.wrapping_add(1),
            id,
        }
        .pack()
    }
}

/// Asks Linux to back the frames with transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`; most systems enable them only on request): a
/// cache read at random over more memory than the TLB covers in 4 KiB pages
/// otherwise pays a page walk on top of the data's cache miss (the kernel's
/// own page cache sits in its direct map, mapped with huge pages). Memory
/// is still committed on first touch, 2 MiB at a time. A hint: a failure
/// (no THP support) changes nothing, so it is ignored.
#[cfg(all(feature = "std", target_os = "linux"))]
fn advise_huge_pages(base: NonNull<u8>, len: usize) {
    const HUGE: usize = 2 << 20;
    if len < HUGE {
        return;
    }
    // SAFETY: `base .. base + len` is one live allocation of ours
    // (page-aligned, as madvise requires); MADV_HUGEPAGE changes only how
    // the kernel backs it, never its contents or validity.
    let _ = unsafe { libc::madvise(base.as_ptr().cast(), len, libc::MADV_HUGEPAGE) };
}

impl Drop for RegionFrames {
    fn drop(&mut self) {
        if let Some((block, layout)) = self.owned {
            // SAFETY: `heap` allocated `block` with this layout, and the pool
            // that used the frames is gone (it owns this source).
            unsafe { dealloc(block.as_ptr(), layout) };
        }
    }
}

// SAFETY: ids 1..=frames map to disjoint, 8-aligned PAGE_SIZE pieces of the
// region `new`'s caller vouched for (or that `heap` allocated); the free
// list hands each id out once until it is freed; `linear_base` is `base`.
unsafe impl FrameSource for RegionFrames {
    fn capacity(&self) -> usize {
        self.frames
    }

    fn alloc(&self) -> Option<FrameId> {
        // Acquire: pairs with the Release CAS in `free` that pushed the
        // frame we see on top (or with a later CAS of the head: all are
        // read-modify-writes, so they carry that push's release sequence).
        // It makes the pusher's link write visible to the link read below,
        // and orders the frame's last use and free before our use of it
        // (the pool's ownership tokens rely on this, see
        // `FramePool::track_owner_change`).
        let mut word = self.head.load(Ordering::Acquire);
        loop {
            let head = Head::unpack(word);
            let id = FrameId::new(head.id)?;
            // Relaxed: the Acquire above (or the failed CAS's) ordered the
            // push's link write before this read. If another thread popped
            // `id` since, the link may be stale or rewritten by a later
            // push; then the head's tag has changed and the CAS fails.
            let next = self.link(id).load(Ordering::Relaxed);
            // Acquire on success: as for the load (the value read is the
            // same head word: a tag that did not change means no other
            // write came between). Acquire on failure: the new head is
            // read through on the next round, as above.
            match self.head.compare_exchange_weak(
                word,
                head.next(next),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // Relaxed: a statistic. After the pop, so the count
                    // never goes below the frames really free (free adds
                    // before it pushes, and our Acquire orders that add
                    // before this subtraction).
                    self.nr_free.fetch_sub(1, Ordering::Relaxed);
                    return Some(id);
                }
                Err(now) => word = now,
            }
        }
    }

    unsafe fn free(&self, id: FrameId) {
        assert!(
            (id.get() as usize) <= self.frames,
            "frame {id:?} is not from this region"
        );
        // Relaxed: a statistic, counted before the frame can be popped (see
        // `alloc`).
        self.nr_free.fetch_add(1, Ordering::Relaxed);
        // Relaxed: we only need the id on top to link to; our CAS checks it
        // is still there, and we read nothing through it.
        let mut word = self.head.load(Ordering::Relaxed);
        loop {
            let head = Head::unpack(word);
            // Relaxed: published by the Release CAS below. Nobody else
            // writes this link while `id` is off the list (it is ours), and
            // poppers read it only after seeing `id` on top.
            self.link(id).store(head.id, Ordering::Relaxed);
            // Release: pairs with `alloc`'s Acquire head load and CAS, so
            // the popper sees the link just written and everything this
            // thread did with the frame before freeing it.
            match self.head.compare_exchange_weak(
                word,
                head.next(id.get()),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => word = now,
            }
        }
    }

    fn free_frames(&self) -> usize {
        self.nr_free.load(Ordering::Relaxed)
    }

    fn frame_ptr(&self, id: FrameId) -> NonNull<u8> {
        let i = id.get() as usize - 1;
        assert!(i < self.frames, "frame {id:?} is not from this region");
        // SAFETY: i < frames, so the offset stays inside the region, which
        // `new` checked does not wrap the address space.
        unsafe { self.base.add(i * PAGE_SIZE) }
    }

    fn phys_addr(&self, id: FrameId) -> u64 {
        let i = id.get() as u64 - 1;
        assert!(
            i < self.frames as u64,
            "frame {id:?} is not from this region"
        );
        self.phys_base + i * PAGE_SIZE as u64
    }

    fn linear_base(&self) -> Option<NonNull<u8>> {
        Some(self.base)
    }

    fn metadata_bytes_per_frame(&self) -> usize {
        core::mem::size_of::<AtomicU32>()
    }
}

impl fmt::Debug for RegionFrames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegionFrames")
            .field("base", &self.base)
            .field("frames", &self.frames)
            .field("phys_base", &format_args!("{:#x}", self.phys_base))
            .field("free", &self.free_frames())
            .finish()
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;
    use crate::frame::FramePool;
    use alloc::sync::Arc;

    /// A page-aligned zeroed region of `frames` frames the test owns.
    struct Region {
        base: NonNull<u8>,
        layout: Layout,
    }

    impl Region {
        fn new(frames: usize) -> Self {
            let layout = Layout::from_size_align(frames * PAGE_SIZE, PAGE_SIZE).unwrap();
            // SAFETY: non-zero size.
            let base = NonNull::new(unsafe { alloc_zeroed(layout) }).unwrap();
            Self { base, layout }
        }
    }

    impl Drop for Region {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout; every user is gone.
            unsafe { dealloc(self.base.as_ptr(), self.layout) };
        }
    }

    #[test]
    fn a_region_hands_out_each_frame_once_with_its_addresses() {
        let region = Region::new(3);
        // SAFETY: the region is ours, unused, and outlives the source.
        let src = unsafe { RegionFrames::new(region.base, 3, 0x4000_0000).unwrap() };
        let ids: alloc::vec::Vec<_> = (0..3).map(|_| src.alloc().unwrap()).collect();
        assert!(src.alloc().is_none());
        assert_eq!(src.free_frames(), 0);
        for id in &ids {
            let i = id.get() as usize - 1;
            assert_eq!(
                src.frame_ptr(*id).as_ptr() as usize,
                region.base.as_ptr() as usize + i * PAGE_SIZE
            );
            assert_eq!(src.phys_addr(*id), 0x4000_0000 + (i * PAGE_SIZE) as u64);
        }
        // SAFETY: allocated above, freed once, used by nothing.
        unsafe { src.free(ids[1]) };
        assert_eq!(src.alloc(), Some(ids[1]));
        for id in ids {
            // SAFETY: as above.
            unsafe { src.free(id) };
        }
        assert_eq!(src.free_frames(), 3);
    }

    #[test]
    fn a_page_map_over_a_region_keeps_its_bytes_in_the_region() {
        let region = Region::new(4);
        // SAFETY: as above.
        let src = unsafe { RegionFrames::new(region.base, 4, 0x1000) }.unwrap();
        let pool = Arc::new(FramePool::with_source(src).unwrap());
        let map = crate::PageMap::new(pool.clone(), Arc::new(crate::MemStore::new()));
        let page = map.load(7).unwrap();
        page.write(100, b"in the region").unwrap();
        let at = page.frame().get() as usize - 1;
        // SAFETY: reading 13 bytes of the region, which outlives the pool;
        // nobody writes the page meanwhile (this thread holds the only ref).
        let raw = unsafe {
            core::slice::from_raw_parts(region.base.as_ptr().add(at * PAGE_SIZE + 100), 13)
        };
        assert_eq!(raw, b"in the region");
        assert_eq!(
            pool.phys_addr(page.frame()),
            0x1000 + (at * PAGE_SIZE) as u64
        );
        drop(page);
        assert_eq!(map.free_unused().freed, 1);
        assert_eq!(pool.free_frames(), 4);
        drop(map);
        drop(pool);
    }

    /// Resident set size in bytes (Linux).
    #[cfg(all(target_os = "linux", not(miri)))]
    fn rss() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * PAGE_SIZE
    }

    /// A heap region of a million frames (4 GiB) commits no memory until
    /// its frames are used: asking the allocator for page alignment made it
    /// zero the whole block by hand.
    #[cfg(all(target_os = "linux", not(miri)))]
    #[test]
    fn a_big_heap_region_is_not_committed_up_front() {
        let before = rss();
        let src = RegionFrames::heap(1 << 20).unwrap();
        let after = rss();
        assert!(
            after.saturating_sub(before) < 64 << 20,
            "a 4 GiB region made {} MiB resident",
            (after - before) >> 20
        );
        assert_eq!(
            src.frame_ptr(FrameId::new(1).unwrap()).as_ptr() as usize % PAGE_SIZE,
            0
        );
        assert_eq!(
            src.phys_addr(FrameId::new(2).unwrap()) % PAGE_SIZE as u64,
            0
        );
    }

    #[test]
    fn a_fresh_list_hands_out_low_ids_first() {
        let src = RegionFrames::heap(5).unwrap();
        let ids: alloc::vec::Vec<u32> = (0..5).map(|_| src.alloc().unwrap().get()).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
        assert!(src.alloc().is_none());
    }

    #[test]
    fn an_exhausted_list_refills_last_freed_first() {
        let src = RegionFrames::heap(4).unwrap();
        for round in 0..3 {
            let ids: alloc::vec::Vec<_> = (0..4).map(|_| src.alloc().unwrap()).collect();
            assert!(src.alloc().is_none(), "round {round}");
            assert_eq!(src.free_frames(), 0);
            for &id in &ids {
                // SAFETY: allocated above, freed once, used by nothing.
                unsafe { src.free(id) };
            }
            assert_eq!(src.free_frames(), 4);
            // A stack: the last frame freed comes out first.
            let again: alloc::vec::Vec<_> = (0..4).map(|_| src.alloc().unwrap()).collect();
            let mut expected = ids.clone();
            expected.reverse();
            assert_eq!(again, expected, "round {round}");
            for id in again {
                // SAFETY: as above.
                unsafe { src.free(id) };
            }
        }
    }

    /// Two threads allocate and free as fast as they can over a small list
    /// (ids reused constantly, the ABA case): a per-id "held" flag catches
    /// a frame handed out twice.
    #[cfg(not(miri))]
    #[test]
    fn concurrent_alloc_and_free_never_hand_out_a_frame_twice() {
        use std::sync::atomic::AtomicBool;
        const FRAMES: usize = 4;
        const ROUNDS: usize = 100_000;
        let src = RegionFrames::heap(FRAMES).unwrap();
        let held: alloc::vec::Vec<AtomicBool> =
            (0..FRAMES).map(|_| AtomicBool::new(false)).collect();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let mut mine = alloc::vec::Vec::with_capacity(2);
                    for i in 0..ROUNDS {
                        // Hold one or two frames at a time, so the list's
                        // order keeps changing.
                        for _ in 0..1 + i % 2 {
                            if let Some(id) = src.alloc() {
                                // Relaxed: the free list orders the hand-offs;
                                // the flag only detects a second holder.
                                let was = held[id.get() as usize - 1].swap(true, Ordering::Relaxed);
                                assert!(!was, "frame {id:?} handed out twice");
                                mine.push(id);
                            }
                        }
                        for id in mine.drain(..) {
                            held[id.get() as usize - 1].store(false, Ordering::Relaxed);
                            // SAFETY: allocated above by this thread, freed once.
                            unsafe { src.free(id) };
                        }
                    }
                });
            }
        });
        assert_eq!(src.free_frames(), FRAMES);
        let mut ids: alloc::vec::Vec<u32> =
            (0..FRAMES).map(|_| src.alloc().unwrap().get()).collect();
        assert!(src.alloc().is_none());
        ids.sort_unstable();
        assert_eq!(ids, [1, 2, 3, 4]);
    }

    #[test]
    fn the_head_word_packs_tag_and_id() {
        let h = Head {
            tag: u32::MAX,
            id: 7,
        };
        assert_eq!(Head::unpack(h.pack()), h);
        // The tag wraps; the id is what the caller names.
        assert_eq!(Head::unpack(h.next(9)), Head { tag: 0, id: 9 });
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(RegionFrames::heap(0).is_err());
        assert!(RegionFrames::heap(RegionFrames::MAX_FRAMES + 1).is_err());
        let region = Region::new(1);
        // SAFETY: nothing is accessed: the call fails.
        assert!(unsafe { RegionFrames::new(region.base, 0, 0) }.is_err());
        // SAFETY: as above. A physical range past the end of the space.
        assert!(unsafe { RegionFrames::new(region.base, 1, u64::MAX - 4095) }.is_err());
    }

    #[test]
    #[should_panic(expected = "page aligned")]
    fn an_unaligned_physical_base_is_refused() {
        let region = Region::new(1);
        // SAFETY: nothing is accessed: the call panics.
        let _ = unsafe { RegionFrames::new(region.base, 1, 0x1234) };
    }

    #[test]
    #[should_panic(expected = "not from this region")]
    fn a_foreign_frame_is_refused() {
        let src = RegionFrames::heap(2).unwrap();
        // SAFETY (violated on purpose, to show the check): not this
        // source's frame; the call panics before touching anything.
        unsafe { src.free(FrameId::new(3).unwrap()) };
    }

    #[test]
    #[should_panic(expected = "not in this pool")]
    fn a_frame_id_beyond_the_pool_is_refused() {
        let pool = FramePool::new(2).unwrap();
        let mut b = [0u8; 1];
        let _ = pool.read_bytes(FrameId::new(3).unwrap(), 0, &mut b);
    }
}
