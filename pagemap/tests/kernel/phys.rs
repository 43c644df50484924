//! "Physical memory": a region the kernel owns, handed to `pagemap` as a
//! [`RegionFrames`] with a made-up physical base, and the kernel's direct
//! map over it (physical address -> pointer).
//!
//! Natively the region is an anonymous `mmap`; under miri, which this
//! harness must also run under, a page-aligned zeroed heap allocation.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use pagemap::{flags, FrameId, FramePool, FrameSource, RegionFrames, PAGE_SIZE};

/// Physical address of the region's first byte (any page-aligned value
/// whose frame number is not 0 would do: 0 in a page table entry is empty).
pub const PHYS_BASE: u64 = 0x8000_0000;

/// The region: `frames` pages at `base`, unmapped (or freed) on drop unless
/// something may still point into it.
pub struct PhysMem {
    base: NonNull<u8>,
    frames: usize,
    leak: bool,
}

// SAFETY: the region is plain memory; who may touch which frame is decided
// by the frame pool and the page tables, not by this owner.
unsafe impl Send for PhysMem {}
// SAFETY: as for Send.
unsafe impl Sync for PhysMem {}

impl PhysMem {
    /// A zeroed region of `frames` pages.
    pub fn new(frames: usize) -> Self {
        Self {
            base: alloc_region(frames),
            frames,
            leak: false,
        }
    }

    /// The region's first byte.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Pages in the region.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The direct map: the CPU address of physical address `phys`.
    ///
    /// # Panics
    /// If `phys` is outside the region.
    pub fn ptr_of_phys(&self, phys: u64) -> NonNull<u8> {
        let off = phys
            .checked_sub(PHYS_BASE)
            .filter(|&o| o < (self.frames * PAGE_SIZE) as u64)
            .unwrap_or_else(|| panic!("physical address {phys:#x} is not in the region"));
        // SAFETY: `off` is inside the region (checked above).
        unsafe { self.base.add(off as usize) }
    }

    /// Whether `p` points into the region.
    pub fn contains(&self, p: NonNull<u8>) -> bool {
        let b = self.base.as_ptr() as usize;
        (b..b + self.frames * PAGE_SIZE).contains(&(p.as_ptr() as usize))
    }

    /// Keeps the memory mapped forever (something may still use it).
    pub fn leak(&mut self) {
        self.leak = true;
    }
}

impl Drop for PhysMem {
    fn drop(&mut self) {
        if !self.leak {
            free_region(self.base, self.frames);
        }
    }
}

#[cfg(not(miri))]
fn alloc_region(frames: usize) -> NonNull<u8> {
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            frames * PAGE_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap of {frames} frames failed");
    NonNull::new(p.cast()).expect("mmap returned null")
}

#[cfg(not(miri))]
fn free_region(base: NonNull<u8>, frames: usize) {
    // SAFETY: `alloc_region` mapped exactly this range, and the owner checked
    // (`Machine`'s drop) that no pool over it is left.
    let r = unsafe { libc::munmap(base.as_ptr().cast(), frames * PAGE_SIZE) };
    assert_eq!(r, 0, "munmap failed");
}

#[cfg(miri)]
fn layout(frames: usize) -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(frames * PAGE_SIZE, PAGE_SIZE).expect("layout")
}

#[cfg(miri)]
fn alloc_region(frames: usize) -> NonNull<u8> {
    // SAFETY: the layout's size is not zero (tests ask for frames >= 1).
    NonNull::new(unsafe { std::alloc::alloc_zeroed(layout(frames)) }).expect("allocation failed")
}

#[cfg(miri)]
fn free_region(base: NonNull<u8>, frames: usize) {
    // SAFETY: `alloc_region` allocated it with this layout; no pool is left.
    unsafe { std::alloc::dealloc(base.as_ptr(), layout(frames)) }
}

/// How frame ids map onto the region's pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `pagemap`'s [`RegionFrames`]: frame `id` is page `id - 1`.
    Region,
    /// The kernel's own allocator ([`KernelFrames`]): frame `id` is page
    /// `frames - id`, so no address follows from a base (no linear base).
    Kernel,
}

impl Layout {
    /// The region page holding frame `id`.
    pub fn page_of(self, frames: usize, id: FrameId) -> usize {
        match self {
            Layout::Region => id.get() as usize - 1,
            Layout::Kernel => frames - id.get() as usize,
        }
    }

    /// The frame held by region page `page`.
    pub fn frame_at(self, frames: usize, page: usize) -> FrameId {
        let raw = match self {
            Layout::Region => page + 1,
            Layout::Kernel => frames - page,
        };
        FrameId::new(raw as u32).unwrap()
    }
}

/// A kernel's own frame allocator over the region: frames handed out from
/// a stack, frame `id` at region page `frames - id` (see [`Layout::Kernel`]).
pub struct KernelFrames {
    base: NonNull<u8>,
    frames: usize,
    free: Mutex<Vec<FrameId>>,
}

// SAFETY: as `PhysMem`: the pointer is the region's base; who touches which
// frame is the pool's business.
unsafe impl Send for KernelFrames {}
// SAFETY: as for Send.
unsafe impl Sync for KernelFrames {}

// SAFETY: ids 1..=frames map to distinct pages of the region (a bijection,
// `Layout::Kernel`), page aligned, valid while the region is mapped (the
// caller of `pool_over` keeps it); the free stack hands each id out once
// until it is freed; no linear base is claimed.
unsafe impl FrameSource for KernelFrames {
    fn capacity(&self) -> usize {
        self.frames
    }

    fn alloc(&self) -> Option<FrameId> {
        self.free.lock().unwrap().pop()
    }

    unsafe fn free(&self, id: FrameId) {
        let mut free = self.free.lock().unwrap();
        assert!(!free.contains(&id), "double free of {id:?}");
        free.push(id);
    }

    fn free_frames(&self) -> usize {
        self.free.lock().unwrap().len()
    }

    fn frame_ptr(&self, id: FrameId) -> NonNull<u8> {
        let page = Layout::Kernel.page_of(self.frames, id);
        // SAFETY: `page < frames` for every id in 1..=frames: inside the region.
        unsafe { self.base.add(page * PAGE_SIZE) }
    }

    fn phys_addr(&self, id: FrameId) -> u64 {
        PHYS_BASE + (Layout::Kernel.page_of(self.frames, id) * PAGE_SIZE) as u64
    }
}

/// A frame pool over the region, its addresses checked.
///
/// The caller (`Machine`) drops the pool before the region.
pub fn pool_over(mem: &PhysMem, layout: Layout) -> Arc<FramePool> {
    let pool = match layout {
        Layout::Region => {
            // SAFETY: the region is valid for reads and writes and used by
            // nothing else; `Machine` keeps it mapped until the pool is gone
            // (it leaks the region if the pool outlives it).
            let source = unsafe { RegionFrames::new(mem.base(), mem.frames(), PHYS_BASE) }
                .expect("a region of a valid size");
            FramePool::with_source(source)
        }
        Layout::Kernel => {
            // Popped from the end: low ids (high pages) first.
            let free = (1..=mem.frames() as u32)
                .rev()
                .map(|r| FrameId::new(r).unwrap());
            FramePool::with_source(KernelFrames {
                base: mem.base(),
                frames: mem.frames(),
                free: Mutex::new(free.collect()),
            })
        }
    };
    let pool = Arc::new(pool.expect("a pool over the region"));
    assert_eq!(pool.capacity(), mem.frames());
    assert_eq!(pool.free_frames(), mem.frames(), "every frame starts free");
    assert_eq!(
        pool.source().linear_base().is_some(),
        layout == Layout::Region
    );
    for raw in 1..=mem.frames() as u32 {
        let id = FrameId::new(raw).unwrap();
        let off = layout.page_of(mem.frames(), id) * PAGE_SIZE;
        assert_eq!(
            pool.frame_ptr(id).as_ptr() as usize,
            mem.base().as_ptr() as usize + off,
            "frame {id:?} is not where the source puts it"
        );
        assert_eq!(pool.phys_addr(id), PHYS_BASE + off as u64);
        assert_eq!(pool.source().frame_ptr(id), pool.frame_ptr(id));
        assert_ne!(pool.flags(id) & flags::FREE, 0);
    }
    pool
}

/// The frame whose memory has physical address `phys` (the inverse of
/// `phys_addr`: the kernel's pfn -> frame id).
pub fn frame_of_phys(mem: &PhysMem, layout: Layout, phys: u64) -> FrameId {
    assert_eq!(
        phys % PAGE_SIZE as u64,
        0,
        "{phys:#x} is not a frame address"
    );
    let off = phys - PHYS_BASE;
    assert!(
        off < (mem.frames() * PAGE_SIZE) as u64,
        "{phys:#x} is not in the region"
    );
    layout.frame_at(mem.frames(), (off / PAGE_SIZE as u64) as usize)
}
